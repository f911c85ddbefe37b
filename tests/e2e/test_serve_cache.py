"""`conveyor serve --cache-size N --cache-ttl D`: repeated identical requests are answered from the cache
(no model call, each with its own id) until the TTL passes; hits and misses on GET /metrics; a bad TTL is
one line."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.scrape import metric_sum

pytestmark = pytest.mark.timeout(120)
JSON = {"content-type": "application/json"}


def _body(rid: str) -> bytes:
    return orjson.dumps(
        {"id": rid, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    )


def test_serve_answers_repeats_from_the_cache_until_the_ttl(
    tmp_path: Path, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    port = free_port()
    argv = [
        conveyor_exe(),
        "serve",
        str(model),
        "--port",
        str(port),
        "--cache-size",
        "10",
        "--cache-ttl",
        "1s",
    ]
    proc = processes.start(argv, env=cli_env)
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/v2/health/ready", proc)
    with httpx.Client(base_url=base, timeout=30) as client:
        answers = [
            client.post("/v2/models/clf/infer", content=_body(f"r{i}"), headers=JSON) for i in range(4)
        ]
        assert [orjson.loads(a.content)["id"] for a in answers] == ["r0", "r1", "r2", "r3"]
        assert len({orjson.dumps(orjson.loads(a.content)["outputs"]) for a in answers}) == 1
        scraped = client.get("/metrics").text
        assert metric_sum(scraped, "conveyor_batch_size_count", model="clf") == 1  # one model call for four
        assert metric_sum(scraped, "conveyor_cache_requests_total", model="clf", result="hit") == 3
        assert metric_sum(scraped, "conveyor_cache_requests_total", model="clf", result="miss") == 1
        time.sleep(1.1)  # past the TTL: the model runs again
        assert client.post("/v2/models/clf/infer", content=_body("late"), headers=JSON).status_code == 200
        scraped = client.get("/metrics").text
        assert metric_sum(scraped, "conveyor_batch_size_count", model="clf") == 2
        assert metric_sum(scraped, "conveyor_cache_requests_total", model="clf", result="miss") == 2


@pytest.mark.parametrize(
    ("ttl", "words"), [("0s", "--cache-ttl must be above zero"), ("soon", "--cache-ttl: invalid duration")]
)
def test_a_bad_cache_ttl_is_one_line_and_exit_2(
    tmp_path: Path, cli_env: dict[str, str], ttl: str, words: str
) -> None:
    argv = [conveyor_exe(), "serve", "m:1", "--cache-size", "5", "--cache-ttl", ttl]
    done = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and words in done.stderr
