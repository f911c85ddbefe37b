"""The dashboard over a real uvicorn server: /ui's files without a token and with a strict CSP, the charts'
series route behind a token, computed from the stack history the control plane keeps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.control.management import create_api
from conveyor.observe.history import Sample, StackHistory
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime
from tests.fixtures.served_app import serving

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


class Served:
    def __init__(self, url: str, token: str, viewer: str, app: Any) -> None:
        self.url, self.token, self.viewer, self.app = url, token, viewer, app

    def get(
        self, path: str, token: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = {**(headers or {}), **({"authorization": f"Bearer {token}"} if token else {})}
        return httpx.get(f"{self.url}{path}", headers=sent, timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a")) as registry:
        registry.register("iris", b"v1", signature=SIG, framework="onnx")
        registry.register("iris", b"v2", signature=SIG, framework="onnx")
        admin, _ = registry.tokens.create("admin", "admin")
        viewer, _ = registry.tokens.create("watcher", "viewer")
        app = create_api(registry, FakeRuntime(registry), Settings(home=tmp_path))
        with serving(app) as url:
            s = Served(url, admin, viewer, app)
            doc = {
                "apiVersion": "conveyor.dev/v1",
                "kind": "Deployment",
                "metadata": {"name": "flowers"},
                "spec": {"model": "iris:2"},
            }
            response = httpx.post(
                f"{s.url}/api/v1/apply",
                json={"documents": [doc]},
                headers={"authorization": f"Bearer {admin}"},
            )
            assert response.status_code == 200, response.text
            yield s


def test_the_page_and_its_files_need_no_token_and_carry_a_strict_csp(served: Served) -> None:
    page = served.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the CSP to refuse
    for src in re.findall(r'(?:src|href)="([^"#:]+)"', page.text):
        linked = served.get(f"/ui/{src}")
        assert linked.status_code == 200, src
        assert linked.headers["content-security-policy"] == csp
    script = served.get("/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for module in re.findall(r'from "\./([\w.]+)"', script.text):  # the modules app.js imports are served
        assert served.get(f"/ui/{module}").status_code == 200, module
    again = served.get("/ui/app.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = httpx.head(f"{served.url}/ui/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-security-policy"] == csp


def test_ui_without_slash_redirects_and_an_unknown_file_is_a_json_404(served: Served) -> None:
    moved = served.get("/ui")
    assert moved.status_code == 308 and moved.headers["location"] == "/ui/"
    missing = served.get("/ui/../../etc/passwd")
    assert missing.status_code == 404
    unknown = served.get("/ui/secrets.json")
    assert unknown.status_code == 404 and unknown.json() == {"error": "no such file: /ui/secrets.json"}


def test_series_needs_a_token_and_names_an_unknown_deployment_and_a_bad_query(served: Served) -> None:
    assert served.get("/api/v1/deployments/flowers/series").status_code == 401
    assert served.get("/api/v1/deployments/flowers/series", token="nope").status_code == 401
    missing = served.get("/api/v1/deployments/nothing/series", token=served.viewer)
    assert missing.status_code == 404 and "nothing" in missing.json()["error"]
    bad = served.get("/api/v1/deployments/flowers/series?since=-1", token=served.viewer)
    assert bad.status_code == 400 and "since" in bad.json()["error"]


def test_series_is_empty_before_the_first_scrape(served: Served) -> None:
    body = served.get("/api/v1/deployments/flowers/series", token=served.viewer).json()
    assert body == {
        "deployment": "flowers",
        "step": 2.0,
        "window": 10.0,
        "now": None,
        "t": [],
        "versions": {},
    }


def _scrape(t: int) -> list[Sample]:
    """What the gateway and one replica exposed at ``t``: 5 requests/s of version 2 through the gateway,
    1 in 5 a 503; every one under 10 ms. The replica counts the requests it ran again."""
    gateway = {"model": "flowers", "version": "2", "protocol": "rest", "component": "gateway"}
    replica = {**gateway, "component": "replica", "instance": "flowers-2-a"}
    samples: list[Sample] = [
        ("conveyor_requests_total", {**gateway, "code": "200"}, 4.0 * t),
        ("conveyor_requests_total", {**gateway, "code": "503"}, 1.0 * t),
        ("conveyor_requests_total", {**replica, "code": "200"}, 50.0 * t),
    ]
    for le, n in (("0.001", 0.0), ("0.01", 5.0 * t), ("+Inf", 5.0 * t)):
        samples.append(("conveyor_request_duration_seconds_bucket", {**gateway, "le": le}, n))
    return samples


def test_series_reads_the_gateways_counts_per_version_from_the_history(served: Served) -> None:
    history = StackHistory()
    for t in range(0, 31, 2):
        history.add(float(t), _scrape(t))
    served.app.state.history = history
    body = served.get(
        "/api/v1/deployments/flowers/series?since=10&step=2&window=4", token=served.viewer
    ).json()
    assert body["now"] == 30 and body["t"] == [20, 22, 24, 26, 28, 30]
    v2 = body["versions"]["2"]
    assert v2["rate"] == pytest.approx([5.0] * 6)  # the gateway's, not the replica's 50/s
    assert v2["error_ratio"] == pytest.approx([0.2] * 6)
    assert v2["p50"] == pytest.approx([0.001 + 0.009 * 0.5] * 6)
    newer = served.get("/api/v1/deployments/flowers/series?since=2&step=2", token=served.viewer).json()
    assert newer["t"] == [28, 30]  # what a page asks every 2 s: only the newest points
