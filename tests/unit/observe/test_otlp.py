"""OTLP export: a sampled request's span carries Conveyor's trace and span ids, its caller as parent, the
request's attributes and an error status for server failures; unsampled requests export nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor.errors import InvalidInput
from conveyor.observe import otlp, trace
from conveyor.observe.recorder import RequestCounts, RequestRecorder
from conveyor.settings import Settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01"
SPAN = f"00-{TRACE}-b7ad6b7169203331-01"
END_NS = 1_700_000_000_000_000_000


def fields(
    protocol: str = "rest", status: int | str = 200, parent: str | None = CALLER, failed: bool = False
) -> otlp.SpanFields:
    return otlp.span_fields(
        "gateway", protocol, "clf", "2", status, 0.25, "rid-1", SPAN, parent, failed, END_NS
    )


def test_a_rest_span_has_this_servers_ids_the_callers_parent_and_the_request_attributes() -> None:
    got = fields()
    assert got.name == "POST /v2/models/clf/infer"
    assert (got.trace_id, got.span_id) == (int(TRACE, 16), 0xB7AD6B7169203331)
    assert got.parent_id == 0x00F067AA0BA902B7
    assert (got.start_ns, got.end_ns) == (END_NS - 250_000_000, END_NS)
    assert got.attributes == {
        "conveyor.component": "gateway",
        "conveyor.model": "clf",
        "conveyor.version": "2",
        "conveyor.request_id": "rid-1",
        "conveyor.protocol": "rest",
        "http.request.method": "POST",
        "http.route": "/v2/models/{model}/infer",
        "http.response.status_code": 200,
    }
    assert got.error is None


@pytest.mark.parametrize(
    "parent", [None, "garbage", "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"]
)
def test_no_parent_or_one_from_another_trace_makes_a_root_span(parent: str | None) -> None:
    assert fields(parent=parent).parent_id is None


def test_the_replicas_channel_hop_and_grpc_have_their_own_names_and_codes() -> None:
    hop = fields("channel", 503, failed=True)
    assert hop.name == "infer clf" and hop.attributes["conveyor.status_code"] == 503
    assert hop.attributes["rpc.system"] == "conveyor.channel" and hop.error == "503"
    rpc = fields("grpc", "INVALID_ARGUMENT")
    assert rpc.name == "inference.GRPCInferenceService/ModelInfer"
    assert rpc.attributes["rpc.grpc.status_code"] == 3 and rpc.error is None


@pytest.fixture
def exported() -> Iterator[tuple[otlp.SpanExport, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    export = otlp.SpanExport(SimpleSpanProcessor(memory), "conveyor", "replica", "r-1")
    yield export, memory
    export.close()


def only_span(memory: InMemorySpanExporter) -> ReadableSpan:
    spans = memory.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def test_the_sdk_span_keeps_conveyors_ids_times_kind_and_resource(
    exported: tuple[otlp.SpanExport, InMemorySpanExporter],
) -> None:
    export, memory = exported
    export.export(fields())
    span = only_span(memory)
    assert span.context is not None and span.parent is not None
    assert (span.context.trace_id, span.context.span_id) == (int(TRACE, 16), 0xB7AD6B7169203331)
    assert span.parent.span_id == 0x00F067AA0BA902B7 and span.parent.trace_id == int(TRACE, 16)
    assert (span.start_time, span.end_time, span.kind) == (END_NS - 250_000_000, END_NS, SpanKind.SERVER)
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None and span.attributes["conveyor.request_id"] == "rid-1"
    assert span.resource.attributes["service.name"] == "conveyor-replica"
    assert span.resource.attributes["service.instance.id"] == "r-1"


def test_a_server_failure_is_an_error_span_and_a_root_has_no_parent(
    exported: tuple[otlp.SpanExport, InMemorySpanExporter],
) -> None:
    export, memory = exported
    export.export(fields(status=500, parent=None, failed=True))
    span = only_span(memory)
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "500"


def test_the_recorder_exports_sampled_requests_only_with_the_callers_parent(
    exported: tuple[otlp.SpanExport, InMemorySpanExporter],
) -> None:
    export, memory = exported
    recorder = RequestRecorder("channel", counts=RequestCounts(), spans=export)
    unsampled = trace.span(f"00-{TRACE}-00f067aa0ba902b7-00", 0.0)
    recorder.record("clf", "2", 200, 0.01, "rid-0", unsampled, CALLER)
    assert memory.get_finished_spans() == ()
    span = trace.span(CALLER, 0.0)
    recorder.record("clf", "2", 500, 0.01, "rid-1", span, CALLER)
    got = only_span(memory)
    assert got.context is not None and got.context.span_id == int(span[36:52], 16)
    assert got.parent is not None and got.parent.span_id == 0x00F067AA0BA902B7
    assert got.name == "infer clf" and got.status.status_code is StatusCode.ERROR


def test_the_collector_url_gets_the_traces_path_once() -> None:
    assert otlp.traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert otlp.traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"


def test_an_endpoint_without_the_otel_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    otlp.check(Settings(otlp_endpoint=None))  # off: nothing to check
    monkeypatch.setattr(otlp, "OTEL_MODULES", ("opentelemetry.not_installed", "no_such_package.sdk"))
    with pytest.raises(InvalidInput, match=r"pip install 'conveyor\[otel\]'"):
        otlp.check(Settings(otlp_endpoint="http://127.0.0.1:4318"))


@pytest.mark.parametrize("bad", ["127.0.0.1:4318", "grpc://collector:4317", "http://", "http://a b"])
def test_an_endpoint_that_is_not_an_http_url_is_one_clear_error(bad: str) -> None:
    with pytest.raises(InvalidInput, match="CONVEYOR_OTLP_ENDPOINT must be an http"):
        otlp.check(Settings(otlp_endpoint=bad))


def test_with_no_endpoint_the_request_path_never_imports_opentelemetry() -> None:
    code = (
        "import sys\n"
        "from conveyor.settings import Settings\n"
        "from conveyor.observe import otlp, recorder\n"
        "import conveyor.frontend.rest, conveyor.server.channel\n"
        "assert otlp.start(Settings(otlp_endpoint=None), 'gateway') is None\n"
        "assert recorder.recorder_for('rest', Settings()).spans is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
