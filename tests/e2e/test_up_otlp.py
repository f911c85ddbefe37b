"""OpenTelemetry export: with CONVEYOR_OTLP_ENDPOINT set, one sampled request through `conveyor up` reaches a
real OTLP/HTTP receiver as a gateway span and a replica span in the client's trace, the replica's parent being
the gateway's span; unsampled requests export nothing (issue 14)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.fixtures.models import LOGREG_BODY
from tests.fixtures.otlp_receiver import OtlpReceiver
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port
from tests.fixtures.stack import UpStack, versions_stack

pytestmark = pytest.mark.timeout(240)
# One replica of clf:1 (YAML takes JSON): the gateway -> replica hop is what the spans show.
DEPLOYMENT = {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "clf"}}
DEPLOYMENT["spec"] = {"model": "clf:1", "replicas": 1}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
MS = 1_000_000


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


@pytest.fixture
def registered(
    cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup, receiver: OtlpReceiver
) -> Iterator[UpStack]:
    # No access log draw: only a caller's sampled traceparent makes a request sampled (and exported).
    env = {**cli_env, "CONVEYOR_OTLP_ENDPOINT": receiver.url, "CONVEYOR_ACCESS_LOG_SAMPLE": "0"}
    yield from versions_stack(processes, env, tmp_path, versions=1)


@pytest.fixture
def stack(registered: UpStack, tmp_path: Path) -> UpStack:
    spec = tmp_path / "clf.yaml"
    spec.write_bytes(orjson.dumps(DEPLOYMENT))
    registered.start("-f", str(spec))
    return registered


def post(stack: UpStack, model: str, **headers: str) -> httpx.Response:
    url = f"{stack.gateway_url}/v2/models/{model}/infer"
    return httpx.post(url, content=LOGREG_BODY, headers={**stack.headers, **headers}, timeout=30)


def test_a_sampled_request_exports_a_gateway_span_and_its_replicas_child(
    stack: UpStack, receiver: OtlpReceiver
) -> None:
    unsampled = post(stack, "clf")  # before the sampled one: its spans would be exported first
    assert unsampled.status_code == 200, unsampled.text
    sampled = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    response = post(stack, "clf", traceparent=sampled, **{"x-request-id": "otlp-1"})
    assert response.status_code == 200, response.text
    gateway_span = response.headers["traceparent"][36:52]

    def both() -> dict[str, dict[str, object]] | None:
        by = {s["resource"]["service.name"]: s for s in receiver.of_trace(CLIENT_TRACE)}
        return by if {"conveyor-gateway", "conveyor-replica"} <= set(by) else None

    by = receiver.wait_for(both, what=f"gateway and replica spans of trace {CLIENT_TRACE}")
    assert set(receiver.paths) == {"/v1/traces"}
    gateway, replica = by["conveyor-gateway"], by["conveyor-replica"]
    assert len(receiver.of_trace(CLIENT_TRACE)) == 2  # one span per hop

    assert gateway["name"] == "POST /v2/models/clf/infer" and gateway["kind"] == Span.SPAN_KIND_SERVER
    assert gateway["span_id"] == gateway_span and gateway["parent_span_id"] == CLIENT_SPAN
    assert gateway["attributes"] == {
        "conveyor.component": "gateway",
        "conveyor.model": "clf",
        "conveyor.version": "1",
        "conveyor.request_id": "otlp-1",
        "conveyor.protocol": "rest",
        "http.request.method": "POST",
        "http.route": "/v2/models/{model}/infer",
        "http.response.status_code": 200,
    }
    assert gateway["status"] == Status.STATUS_CODE_UNSET

    assert replica["name"] == "infer clf" and replica["parent_span_id"] == gateway_span
    assert replica["span_id"] not in (gateway_span, CLIENT_SPAN)
    assert replica["resource"]["service.instance.id"] in {r["id"] for r in stack.replicas("clf")}
    attrs = replica["attributes"]
    assert attrs["conveyor.component"] == "replica" and attrs["conveyor.request_id"] == "otlp-1"
    assert attrs["conveyor.version"] == "1" and attrs["conveyor.status_code"] == 200
    # The replica's work lies within the gateway's (one clock: the same machine).
    assert gateway["start"] - MS <= replica["start"] <= replica["end"] <= gateway["end"] + MS

    assert receiver.of_trace(unsampled.headers["traceparent"][3:35]) == []  # not sampled: not exported


def test_a_sampled_refusal_is_a_gateway_span_with_its_status_and_no_error(
    stack: UpStack, receiver: OtlpReceiver
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    response = post(stack, "no-such-model", traceparent=f"00-{trace_id}-b7ad6b7169203331-01")
    assert response.status_code == 404, response.text
    spans = receiver.wait_for(lambda: receiver.of_trace(trace_id), what="the 404's span")
    assert len(spans) == 1 and spans[0]["resource"]["service.name"] == "conveyor-gateway"
    assert spans[0]["attributes"]["http.response.status_code"] == 404
    assert spans[0]["status"] == Status.STATUS_CODE_UNSET  # a client's mistake is not the server's error


def test_an_endpoint_without_the_otel_extra_stops_conveyor_up_with_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # An empty `opentelemetry` package first on the path: as if the otel extra were not installed.
    (tmp_path / "shadow" / "opentelemetry").mkdir(parents=True)
    (tmp_path / "shadow" / "opentelemetry" / "__init__.py").write_text("")
    env = {**cli_env, "PYTHONPATH": str(tmp_path / "shadow"), "CONVEYOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    args = [conveyor_exe(), "up", "--port", str(free_port()), "--api-port", str(free_port())]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "needs the otel extra: pip install" in done.stderr
