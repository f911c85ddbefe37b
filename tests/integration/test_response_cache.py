"""A real replica with a response cache: a repeated request is answered without a model run and carries its
own id, over REST (the hot path and the regular route) and gRPC; the other version served never answers with
the first one's cached outputs; hits and misses are on GET /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as tg

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import free_port
from tests.fixtures.replica import running_replica
from tests.fixtures.scrape import metric_sum

pytestmark = pytest.mark.timeout(120)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def replica(models_dir: Path) -> Iterator[tuple[str, int]]:
    """lr:1 and lr:2 (other weights: other answers), each with a cache; (base URL, gRPC port)."""
    files = {
        "lr:1": build_logreg(models_dir / "cache-v1.onnx", seed=11),
        "lr:2": build_logreg(models_dir / "cache-v2.onnx", seed=12),
    }
    grpc_port = free_port()
    args = ("--cache-max-entries", "100", "--cache-ttl", "60", "--grpc-port", str(grpc_port))
    with running_replica(files, *args) as url:
        yield url, grpc_port


def _body(rid: str | None, x: list[float]) -> bytes:
    doc: dict[str, object] = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": x}]}
    if rid is not None:
        doc = {"id": rid, **doc}
    return orjson.dumps(doc)


def _runs(client: httpx.Client, version: str) -> float:
    """Model calls of lr:VERSION so far (the batcher's histogram of rows per call)."""
    return metric_sum(client.get("/metrics").text, "conveyor_batch_size_count", model="lr", version=version)


def test_a_repeated_request_skips_the_model_and_carries_its_own_id(replica: tuple[str, int]) -> None:
    url, grpc_port = replica
    x = [0.1, 0.2, 0.3, 0.4]
    with httpx.Client(base_url=url, timeout=30) as client:
        first = client.post("/v2/models/lr/versions/1/infer", content=_body("a", x), headers=JSON)
        assert first.status_code == 200
        runs = _runs(client, "1")
        again = client.post("/v2/models/lr/versions/1/infer", content=_body("b", x), headers=JSON)
        chunked = client.post(  # no Content-Length: the regular route, not the hot path
            "/v2/models/lr/versions/1/infer", content=iter([_body("c", x)]), headers=JSON
        )
        no_id = client.post(
            "/v2/models/lr/versions/1/infer",
            content=_body(None, x),
            headers={**JSON, "x-request-id": "hdr-7"},
        )
        grpc = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            t = tg.InferInput("input", [1, 4], "FP32")
            t.set_data_from_numpy(np.array([x], np.float32))
            assert _runs(client, "1") == runs  # none of the REST requests ran the model
            grpc.infer("lr", [t], model_version="1", request_id="g-0")  # binary tensors: another body, a miss
            by_grpc = grpc.infer("lr", [t], model_version="1", request_id="g-1")
        finally:
            grpc.close()
        assert _runs(client, "1") == runs + 1  # the second gRPC request did not run it either
        expected = orjson.loads(first.content)
        assert orjson.loads(again.content) == {**expected, "id": "b"}
        assert orjson.loads(chunked.content) == {**expected, "id": "c"}
        assert orjson.loads(no_id.content)["id"] == no_id.headers["x-request-id"] == "hdr-7"
        assert by_grpc.get_response().id == "g-1"
        probabilities = np.array(expected["outputs"][1]["data"], np.float32)
        assert np.allclose(by_grpc.as_numpy("probabilities").ravel(), probabilities)
        scraped = client.get("/metrics").text
    assert metric_sum(scraped, "conveyor_cache_requests_total", model="lr", version="1", result="hit") >= 4
    assert metric_sum(scraped, "conveyor_cache_requests_total", model="lr", version="1", result="miss") >= 1
    assert metric_sum(scraped, "conveyor_cache_entries", model="lr", version="1") >= 1
    assert metric_sum(scraped, "conveyor_cache_bytes", model="lr", version="1") > 0


def test_the_new_version_never_answers_with_the_old_ones_cached_outputs(replica: tuple[str, int]) -> None:
    url, _ = replica
    x = [1.5, -0.5, 2.5, 0.0]
    with httpx.Client(base_url=url, timeout=30) as client:
        old = orjson.loads(
            client.post("/v2/models/lr/versions/1/infer", content=_body("a", x), headers=JSON).content
        )
        runs = _runs(client, "2")
        new = [
            orjson.loads(client.post("/v2/models/lr/infer", content=_body(f"n{i}", x), headers=JSON).content)
            for i in range(3)
        ]
        assert _runs(client, "2") == runs + 1  # version 2 ran once, then answered from its own cache
    for i, answer in enumerate(new):
        assert answer["model_version"] == "2" and answer["id"] == f"n{i}"
        assert answer["outputs"] == new[0]["outputs"] != old["outputs"]
