"""`conveyor up -f` with ``spec.cache``: the replicas answer a repeated request from their cache (the control
plane's /metrics counts the hits), each answer with its own id; after an apply moves the deployment to
version 2, the same request is answered by version 2, never by version 1's cached answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.processes import ProcessGroup
from tests.fixtures.scrape import metric_sum
from tests.fixtures.stack import UpStack, versions_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:{v}
  replicas: 1
  cache:
    maxEntries: 100
    ttl: 5m
"""


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path)


def infer(stack: UpStack, rid: str) -> dict[str, Any]:
    body = {
        "id": rid,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [3, 1, 4, 1]}],
    }
    response = httpx.post(
        f"{stack.gateway_url}/v2/models/clf/infer",
        content=orjson.dumps(body),
        headers=stack.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["id"] == rid
    return answer


def cache_count(stack: UpStack, version: str, result: str) -> float:
    text = httpx.get(f"{stack.api_url}/metrics", headers=stack.headers, timeout=30).text
    return metric_sum(text, "conveyor_cache_requests_total", model="clf", version=version, result=result)


def test_a_deployment_with_a_cache_answers_repeats_from_it_and_a_new_version_from_its_own(
    stack: UpStack, tmp_path: Path
) -> None:
    for v in (1, 2):
        (tmp_path / f"v{v}.yaml").write_text(SPEC.format(v=v))
    stack.start("-f", str(tmp_path / "v1.yaml"))
    stack.wait(lambda: stack.serving("clf", "1", 1), what="version 1 serving")
    first = [infer(stack, f"one-{i}") for i in range(4)]
    assert {a["model_version"] for a in first} == {"1"}
    assert all(a["outputs"] == first[0]["outputs"] for a in first)
    stack.wait(lambda: cache_count(stack, "1", "hit") == 3, what="3 hits of version 1 scraped")
    assert cache_count(stack, "1", "miss") == 1

    stack.cli("apply", "-f", str(tmp_path / "v2.yaml"), "--wait", "--timeout", "90")
    stack.wait(lambda: stack.serving("clf", "2", 1), what="version 2 alone")
    second = [infer(stack, f"two-{i}") for i in range(3)]
    assert {a["model_version"] for a in second} == {"2"}
    assert all(a["outputs"] == second[0]["outputs"] != first[0]["outputs"] for a in second)
    stack.wait(lambda: cache_count(stack, "2", "hit") == 2, what="2 hits of version 2 scraped")
    assert cache_count(stack, "2", "miss") == 1
