"""`conveyor serve` counts what its clients see on GET /metrics: every answer by code and protocol (hot path,
regular path, gRPC), durations, the batcher's calls and the process's CPU and memory; with a token file only
its tokens read it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok

pytestmark = pytest.mark.timeout(180)
BODY = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
BAD = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}'
JSON = {"content-type": "application/json"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(found: dict[tuple[str, frozenset[tuple[str, str]]], float], **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (name, ls), v in found.items() if name == "conveyor_requests_total" and want <= ls)


def test_serve_counts_every_answer_by_code_and_protocol(
    tmp_path: Path, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-0123456789abcdef\n")
    port, grpc_port = free_port(), free_port()
    argv = [conveyor_exe(), "serve", str(model), "--port", str(port), "--grpc-port", str(grpc_port)]
    proc = processes.start([*argv, "--token-file", str(tokens)], env=cli_env)
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": "Bearer reader-0123456789abcdef"}
    wait_http_ok(f"{base}/v2/health/ready", proc)
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/metrics").status_code == 401
        for _ in range(5):
            assert (
                client.post("/v2/models/clf/infer", content=BODY, headers={**JSON, **auth}).status_code == 200
            )
        for _ in range(2):
            assert (
                client.post("/v2/models/clf/infer", content=BAD, headers={**JSON, **auth}).status_code == 400
            )
        assert client.post("/v2/models/clf/infer", content=BODY, headers=JSON).status_code == 401
        assert client.post("/v2/models/nope/infer", content=BODY, headers={**JSON, **auth}).status_code == 404
        # Chunked: no Content-Length, so the regular (Starlette) route answers it.
        chunked = client.post("/v2/models/clf/infer", content=iter([BODY]), headers={**JSON, **auth})
        assert chunked.status_code == 200
        grpc = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        x = tg.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        grpc.infer("clf", [x], headers=auth)
        with pytest.raises(InferenceServerException):
            grpc.infer("clf", [x])  # no token
        grpc.close()
        scraped = client.get("/metrics", headers=auth)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(scraped.text)
    assert requests_total(found, model="clf", protocol="rest", code="200") == 6
    assert requests_total(found, model="clf", protocol="rest", code="400") == 2
    assert requests_total(found, model="clf", protocol="rest", code="401") == 1
    assert requests_total(found, model="nope", protocol="rest", code="404") == 1
    assert requests_total(found, model="clf", protocol="grpc", code="OK") == 1
    assert requests_total(found, model="clf", protocol="grpc", code="UNAUTHENTICATED") == 1
    rest = frozenset({("model", "clf"), ("version", ""), ("protocol", "rest")})
    assert found[("conveyor_request_duration_seconds_count", rest)] == 9
    model_labels = frozenset({("model", "clf"), ("version", "")})
    # 7 requests reached the model (6 REST, 1 gRPC); the 2 bad ones were refused before it
    assert found[("conveyor_queue_duration_seconds_count", model_labels)] == 7
    assert found[("conveyor_batch_size_sum", model_labels)] == 7
    assert found[("conveyor_queue_depth", model_labels)] == 0
    assert found[("conveyor_in_flight_requests", model_labels)] == 0
    assert found[("process_cpu_seconds_total", frozenset())] > 0
    assert found[("process_resident_memory_bytes", frozenset())] > 10_000_000
