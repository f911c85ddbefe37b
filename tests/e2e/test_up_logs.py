"""`conveyor logs` finds one request's lines in the gateway and in the replica that ran it, with the same
request id and trace id, across the JSON-lines files of every process of `conveyor up` (issue 14)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import orjson
import pytest

from conveyor.observe import trace
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack

pytestmark = pytest.mark.timeout(240)
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:1
  replicas: 2
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
)
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """One stack for the file (each test sends requests with ids of its own)."""
    tmp = tmp_path_factory.mktemp("logs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {"CONVEYOR_HOME": str(tmp / "home"), "COLUMNS": "200", "CONVEYOR_ACCESS_LOG_SAMPLE": "1"}
    group = ProcessGroup()
    up = UpStack(group, env, tmp / "home")
    try:
        up.cli("models", "register", "clf", str(build_logreg(tmp / "clf.onnx")))
        spec = tmp / "clf.yaml"
        spec.write_text(SPEC)
        up.start("-f", str(spec))
        yield up
    finally:
        up.stop()
        group.stop_all()


def lines_of(stack: UpStack, *args: str) -> list[dict[str, object]]:
    out = stack.cli("logs", *args, "--json").stdout
    return [orjson.loads(line) for line in out.splitlines()]


def request_lines(stack: UpStack, rid: str) -> list[dict[str, object]]:
    """The request's lines once both its gateway's and its replica's are on disk (files flush each second)."""

    def both() -> list[dict[str, object]] | None:
        found = lines_of(stack, "--request-id", rid)
        return found if {d["component"] for d in found} >= {"gateway", "replica"} else None

    result: list[dict[str, object]] = stack.wait(both, timeout=15, what=f"gateway and replica lines of {rid}")
    return result


def test_one_request_id_finds_its_gateway_and_replica_lines_with_one_trace(stack: UpStack) -> None:
    parent = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-00"
    headers = {**stack.headers, "x-request-id": "find-me-1", "traceparent": parent}
    response = httpx.post(
        f"{stack.gateway_url}/v2/models/clf/infer", content=BODY, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    span = response.headers["traceparent"]
    assert trace.trace_id(span) == CLIENT_TRACE and span != parent  # the client's trace, the gateway's span

    found = request_lines(stack, "find-me-1")
    by = {d["component"]: d for d in found}
    assert by["gateway"]["model"] == "clf" and by["gateway"]["status"] == 200
    assert by["replica"]["replica"] in {r["id"] for r in stack.replicas("clf")}
    assert {trace.trace_id(str(d["traceparent"])) for d in found} == {CLIENT_TRACE}
    assert by["gateway"]["traceparent"] != by["replica"]["traceparent"]  # a span per hop
    assert all(isinstance(d["latency_ms"], float) and d["time"] for d in found)


def test_a_request_without_an_id_gets_one_back_that_finds_its_lines(stack: UpStack) -> None:
    response = httpx.post(
        f"{stack.gateway_url}/v2/models/clf/infer", content=BODY, headers=stack.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    rid = response.headers["x-request-id"]
    found = request_lines(stack, rid)
    assert len({trace.trace_id(str(d["traceparent"])) for d in found}) == 1  # a new trace, the same on both


def test_logs_of_a_deployment_list_its_replicas_lines_and_filters_are_checked(stack: UpStack) -> None:
    replicas = {r["id"] for r in stack.replicas("clf")}
    assert len(replicas) == 2
    for i in range(8):  # both replicas answer some (the gateway spreads the load when busy) or the warm one
        headers = {**stack.headers, "x-request-id": f"dep-{i}"}
        httpx.post(f"{stack.gateway_url}/v2/models/clf/infer", content=BODY, headers=headers, timeout=30)
    request_lines(stack, "dep-7")
    lines = lines_of(stack, "clf")
    assert lines and all(d.get("model") == "clf" or d.get("replica") in replicas for d in lines)
    assert {d["replica"] for d in lines if d["component"] == "replica"} & replicas
    assert [d["time"] for d in lines] == sorted(str(d["time"]) for d in lines)  # merged by time
    assert lines_of(stack, "no-such-deployment") == []
    only = lines_of(stack, "--component", "control")
    assert only and {d["component"] for d in only} == {"control"}
    assert lines_of(stack, "--since", "2099-01-01T00:00") == []

    readable = stack.cli("logs", "--request-id", "dep-7").stdout
    assert "gateway INFO conveyor.access: request" in readable and "request_id=dep-7" in readable

    bad = stack.cli("logs", "--since", "yesterday", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr
    bad = stack.cli("logs", "--component", "db", check=False)
    assert bad.returncode == 2 and "not a component" in bad.stderr and "Traceback" not in bad.stderr
