"""The dashboard in a real Chromium (Debian's, driven by Playwright) against a real `conveyor up` under load:
it opens signed in from the URL `up` prints, lists the deployment, its request-rate chart grows while the load
runs (one line per version across a version change), no console errors; a bad token gets the sign-in prompt.

Screenshots are kept under the test's tmp dir, and copied to $CONVEYOR_TEST_ARTIFACTS when that is set (the
one in docs/images/dashboard.png was taken so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, output_of
from tests.fixtures.stack import UpStack

CHROMIUM = Path("/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="pip playwright is not installed (dev extra)")
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)"),
]
# Chromium as the machine allows it: no sandbox as root, and nothing that reaches out to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:{version}
  replicas: 1
  monitoring:
    drift: {{sampleEvery: 1, window: 200}}
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
)


class Traffic:
    """A thread posting inferences to the gateway (about 40/s) until stopped; counts the answers."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self._stop.wait(0.025):
                try:
                    code = client.post(self.url, content=BODY).status_code
                except httpx.HTTPError:
                    code = 0
                self.codes[code] = self.codes.get(code, 0) + 1

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the traffic thread did not stop"
        return self.codes


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    up = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    up.cli("models", "register", "clf", str(build_logreg(tmp_path / "clf0.onnx", seed=0)))
    # v2 comes from v1 (lineage) and has a reference sample: the constant rows the traffic sends drift.
    reference = tmp_path / "reference.npy"
    np.save(reference, np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32))
    v2 = str(build_logreg(tmp_path / "clf1.onnx", seed=1))
    up.cli("models", "register", "clf", v2, "--parent-version", "1", "--reference", str(reference))
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _spec(tmp_path: Path, version: int) -> str:
    path = tmp_path / f"clf-{version}.yaml"
    path.write_text(SPEC.format(version=version))
    return str(path)


def _keep(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if artifacts := os.environ.get("CONVEYOR_TEST_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / name)
    return shot


def _chart(page: Any, box: str) -> tuple[int, dict[str, float | None]]:
    """The points drawn in one chart and the last value of each version's line (its data attributes)."""
    svg = page.locator(f"#{box} svg")
    return int(svg.get_attribute("data-points") or 0), json.loads(svg.get_attribute("data-last") or "{}")


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


def test_the_dashboard_opens_signed_in_and_its_charts_move_under_load(
    stack: UpStack, browser: Any, tmp_path: Path
) -> None:
    stack.start("-f", _spec(tmp_path, 1))
    found = re.search(r"dashboard: (http://\S+)", output_of(stack.proc) if stack.proc else "")
    assert found, "conveyor up printed no dashboard URL"
    url = found.group(1)
    assert url.startswith(f"{stack.api_url}/ui/#token=")
    traffic = Traffic(f"{stack.gateway_url}/v2/models/clf/infer", stack.headers)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = _console_errors(page)
        page.goto(url)
        page.wait_for_selector('tr[data-deployment="clf"]', timeout=30_000)
        assert "token" not in page.url  # moved into the tab's storage, out of the address bar
        assert page.locator("#models").inner_text().count("v2") == 1  # lineage: v2 under v1
        assert "from v1" in page.locator("#models").inner_text()

        stack.wait(lambda: _chart(page, "chart-rate")[0] >= 3, timeout=60, what="3 points of request rate")
        first, _ = _chart(page, "chart-rate")
        stack.wait(lambda: _chart(page, "chart-rate")[0] >= first + 2, timeout=30, what="the chart to grow")
        points, last = _chart(page, "chart-rate")
        assert points > first and (last.get("1") or 0) > 5, (points, first, last)
        _keep(page, tmp_path, "dashboard-v1.png")

        stack.cli("apply", "-f", _spec(tmp_path, 2), "--wait")  # a version change under load
        stack.wait(
            lambda: (_chart(page, "chart-rate")[1].get("2") or 0) > 5, timeout=60, what="a line for version 2"
        )
        assert page.locator('#chart-rate path[data-version="1"]').count() == 1
        assert page.locator('#chart-p99 path[data-version="2"]').count() == 1
        assert "ready" in page.locator("#replicas").inner_text()
        assert "clf:2" in page.locator("#facts").inner_text()
        page.wait_for_selector(
            "#drift tr.drift-drift", timeout=60_000
        )  # its inputs are far from the reference
        _keep(page, tmp_path, "dashboard.png")
        assert errors == []
    finally:
        codes = traffic.stop()
    assert codes.get(200, 0) > 100 and set(codes) == {200}, codes


def test_without_or_with_a_bad_token_the_page_asks_for_one(
    stack: UpStack, browser: Any, tmp_path: Path
) -> None:
    stack.start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = _console_errors(page)
    page.goto(f"{stack.api_url}/ui/")
    page.wait_for_selector("#login:not([hidden])")
    assert "needs a Conveyor token" in page.locator("#login").inner_text()
    assert errors == []  # no call went out without a token

    page.goto(f"{stack.api_url}/ui/#token=not-a-token")
    page.wait_for_selector("#login-message:has-text('refused the token')")
    assert page.locator("#app").is_hidden()
    _keep(page, tmp_path, "dashboard-sign-in.png")

    page.fill("#token", stack.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    assert "No deployments yet" in page.locator("#deployments").inner_text()
    page.reload()  # the token stays with the tab
    page.wait_for_selector("#app:not([hidden])")
