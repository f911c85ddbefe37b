"""OpenTelemetry export of request spans over OTLP/HTTP, off unless ``otlp_endpoint`` is set.

Conveyor keeps its own W3C spans (observe/trace.py): this module only reports them. The request recorder
(observe/recorder.py) hands over each sampled request once it is answered: this server's traceparent gives
the trace and span ids, the caller's its parent, and the recorder's duration the start and end times. The
SDK's batch processor queues the span and a thread of its own exports it, so the request path pays one
span object per sampled request and no I/O; when the queue is full the SDK drops the oldest and logs it.
Nothing here imports OpenTelemetry until ``start`` is called with an endpoint set.
"""

from __future__ import annotations

import atexit
import importlib.util
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.errors import InvalidInput
from conveyor.observe import trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    from conveyor.settings import Settings

OTEL_EXTRA = (
    "CONVEYOR_OTLP_ENDPOINT is set, but OTLP export needs the otel extra: pip install 'conveyor[otel]'"
)
OTEL_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
TRACES_PATH = "/v1/traces"
_URL = re.compile(r"https?://[^/\s]+(/\S*)?")
MAX_QUEUE = 4096  # spans waiting for export; beyond it the SDK drops the oldest (and logs it)
MAX_BATCH = 512  # spans per export request
DELAY_MS = 1000  # how long a span may wait for its batch to fill
EXPORT_TIMEOUT_S = 5.0  # per export request, retries included: a collector that is away must not hold exit
SCOPE = "conveyor"
GRPC_SERVICE = "inference.GRPCInferenceService"
_process: SpanExport | None = None


@dataclass(frozen=True, slots=True)
class SpanFields:
    """What one request's span says, before it is an SDK object (pure: unit-tested on its own)."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None  # the caller's span in the same trace; None: this span is the trace's root here
    start_ns: int
    end_ns: int
    attributes: dict[str, str | int]
    error: str | None  # the status description of a failed answer (5xx, a server-side gRPC code)


def span_fields(
    component: str,
    protocol: str,
    model: str,
    version: str | None,
    status: int | str,
    seconds: float,
    request_id: str | None,
    traceparent: str,
    parent: str | None,
    failed: bool,
    end_ns: int | None = None,
) -> SpanFields:
    """One answered request's span: ``traceparent`` is this server's span, ``parent`` the caller's (its
    traceparent header, or the gateway's span for a replica's channel hop), ``end_ns`` its answer's time."""
    if end_ns is None:
        end_ns = time.time_ns()
    attributes: dict[str, str | int] = {"conveyor.component": component, "conveyor.model": model}
    if version:
        attributes["conveyor.version"] = version
    if request_id:
        attributes["conveyor.request_id"] = request_id
    attributes["conveyor.protocol"] = protocol
    if protocol == "grpc":
        name = f"{GRPC_SERVICE}/ModelInfer"
        attributes.update({"rpc.system": "grpc", "rpc.service": GRPC_SERVICE, "rpc.method": "ModelInfer"})
        attributes["rpc.grpc.status_code"] = _grpc_code(status)
    elif protocol == "channel":  # the replica's side of the gateway's call: statuses are HTTP's
        name = f"infer {model}"
        attributes.update({"rpc.system": "conveyor.channel", "rpc.method": "infer"})
        attributes["conveyor.status_code"] = status
    else:
        name = f"POST /v2/models/{model}/infer"
        attributes.update({"http.request.method": "POST", "http.route": "/v2/models/{model}/infer"})
        attributes["http.response.status_code"] = status
    parent_id = None
    if parent is not None and trace.trace_id(parent) == traceparent[3:35]:
        parent_id = int(parent[36:52], 16)
    return SpanFields(
        name=name,
        trace_id=int(traceparent[3:35], 16),
        span_id=int(traceparent[36:52], 16),
        parent_id=parent_id,
        start_ns=end_ns - round(seconds * 1e9),
        end_ns=end_ns,
        attributes=attributes,
        error=str(status) if failed else None,
    )


def _grpc_code(status: int | str) -> int:
    import grpc

    try:
        return int(grpc.StatusCode[str(status)].value[0])
    except KeyError:
        return int(grpc.StatusCode.UNKNOWN.value[0])


class SpanExport:
    """One process's exporter: its spans go to ``processor`` (the SDK's batch processor in production, a
    synchronous one in tests) under a TracerProvider whose ids are the ones Conveyor's traceparents carry."""

    def __init__(
        self, processor: SpanProcessor, service_name: str, component: str, instance: str | None = None
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        self.component = component
        self._given = threading.local()  # the ids of the span this thread is about to start
        resource: dict[str, str] = {"service.name": f"{service_name}-{component}", "service.namespace": SCOPE}
        if instance:
            resource["service.instance.id"] = instance
        self._provider = TracerProvider(
            sampler=ALWAYS_ON,  # the sampling was decided where the request entered (trace.span)
            resource=Resource.create(resource),
            id_generator=_given_ids(self._given),
            shutdown_on_exit=False,  # close() at exit, registered by start()
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer(SCOPE)

    def export(self, fields: SpanFields) -> None:
        """Queue one span (the recorder's hook, for a sampled request just answered)."""
        from opentelemetry import trace as otel
        from opentelemetry.trace.status import Status, StatusCode

        context = None
        if fields.parent_id is not None:
            flags = otel.TraceFlags(otel.TraceFlags.SAMPLED)
            caller = otel.SpanContext(fields.trace_id, fields.parent_id, is_remote=True, trace_flags=flags)
            context = otel.set_span_in_context(otel.NonRecordingSpan(caller))
        self._given.ids = (fields.trace_id, fields.span_id)  # read back by start_span, on this thread
        span = self._tracer.start_span(
            fields.name,
            context=context,
            kind=otel.SpanKind.SERVER,
            attributes=fields.attributes,
            start_time=fields.start_ns,
        )
        if fields.error is not None:
            span.set_status(Status(StatusCode.ERROR, fields.error))
        span.end(end_time=fields.end_ns)

    def close(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the export thread."""
        self._provider.shutdown()


def _given_ids(given: threading.local) -> IdGenerator:
    """The SDK's id generator, answering the ids ``given`` holds for this thread: Conveyor's, not new ones."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class GivenIds(IdGenerator):
        def generate_trace_id(self) -> int:
            return int(given.ids[0])

        def generate_span_id(self) -> int:
            return int(given.ids[1])

        def is_trace_id_random(self) -> bool:
            return True

    return GivenIds()


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: ``<endpoint>/v1/traces``, or the endpoint itself when it names it."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def check(settings: Settings) -> None:
    """Raise InvalidInput (one line for the CLI) when the endpoint set is not an http(s) URL or the otel
    extra is missing."""
    endpoint = settings.otlp_endpoint
    if endpoint is None:
        return
    if _URL.fullmatch(endpoint) is None:
        raise InvalidInput(f"CONVEYOR_OTLP_ENDPOINT must be an http:// or https:// URL, got {endpoint!r}")
    try:
        missing = any(importlib.util.find_spec(name) is None for name in OTEL_MODULES)
    except ImportError:  # a parent package is missing
        missing = True
    if missing:
        raise InvalidInput(OTEL_EXTRA) from None


def start(settings: Settings, component: str, instance: str | None = None) -> SpanExport | None:
    """At process start: this process's span export when ``otlp_endpoint`` is set (flushed at exit), which
    request recorders made afterwards use; None when it is not (nothing is imported)."""
    global _process
    if settings.otlp_endpoint is None:
        return None
    check(settings)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint), timeout=EXPORT_TIMEOUT_S)
    processor = BatchSpanProcessor(
        exporter, max_queue_size=MAX_QUEUE, schedule_delay_millis=DELAY_MS, max_export_batch_size=MAX_BATCH
    )
    _process = SpanExport(processor, settings.otlp_service_name, component, instance)
    atexit.register(_process.close)
    return _process


def process_export() -> SpanExport | None:
    """The span export ``start`` made in this process, if any (read by ``recorder_for``)."""
    return _process
