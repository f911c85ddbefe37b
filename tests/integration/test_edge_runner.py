"""run.py's V2 endpoint on a loopback port: metadata, health, answers, and 4xx naming what is wrong."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.edge import build
from tests.unit.edge.test_bundle import _runner, _version


@pytest.fixture(scope="module")
def edge_url(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> Iterator[str]:
    data = logreg_onnx.read_bytes()
    bundle = build(_version("logreg", data), data, tmp_path_factory.mktemp("edge-serve") / "b")
    run = _runner(bundle)
    server = run.make_server(run.load(bundle.path), "127.0.0.1", 0)  # the kernel's free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


BODY: dict[str, Any] = {
    "id": "r-1",
    "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}],
}


def test_health_metadata_and_an_answer(edge_url: str) -> None:
    with httpx.Client(base_url=edge_url, timeout=10) as c:
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2/models/logreg/ready").status_code == 200
        meta = c.get("/v2/models/logreg").json()
        assert (meta["name"], meta["versions"]) == ("logreg", ["3"])
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        for path in ("/v2/models/logreg/infer", "/v2/models/logreg/versions/3/infer"):
            r = c.post(path, json=BODY)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert (answer["id"], answer["model_version"]) == ("r-1", "3")
            assert [o["name"] for o in answer["outputs"]] == ["label", "probabilities"]
            assert answer["outputs"][1]["shape"] == [2, 3]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/v2/models/other/infer", BODY, 404, "no route /v2/models/other/infer; this server answers "),
        ("/v2/models/logreg/versions/9/infer", BODY, 404, "no route "),
        ("/v2/models/logreg/infer", b"{not json", 400, "Expecting property name"),
        ("/v2/models/logreg/infer", {"inputs": 3}, 400, "the body must be a V2 request"),
        (
            "/v2/models/logreg/infer",
            {"inputs": [{**BODY["inputs"][0], "shape": [3, 4]}]},
            400,
            "input 'input': shape [3, 4] does not fit its data",
        ),
        (
            "/v2/models/logreg/infer",
            {"inputs": [{**BODY["inputs"][0], "name": "x"}]},
            400,
            "unknown input 'x'; inputs: input",
        ),
        (
            "/v2/models/logreg/infer",
            {"inputs": [{**BODY["inputs"][0], "shape": [4, 2]}]},
            400,
            "inference failed: ",
        ),
    ],
)
def test_bad_requests_get_a_4xx_naming_what_is_wrong(
    edge_url: str, path: str, body: Any, status: int, error: str
) -> None:
    content = body if isinstance(body, bytes) else None
    with httpx.Client(base_url=edge_url, timeout=10) as c:  # one connection: the next request must still work
        r = c.post(path, json=None if content else body, content=content)
        assert r.status_code == status, r.text
        assert error in r.json()["error"]
        assert c.post("/v2/models/logreg/infer", json=BODY).status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(edge_url: str) -> None:
    import http.client

    host, port = edge_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/v2/models/logreg/infer")
        conn.putheader("Content-Length", str(65 * 1024 * 1024))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and b"is over" in r.read()
    finally:
        conn.close()
