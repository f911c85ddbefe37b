"""The V2 inference route served inside uvicorn's HTTP protocol, without the ASGI and Starlette layers.

Measured on 2 cores with the tiny model (docs/benchmarks.md): a request through Starlette's routing, request
and response objects costs about twice what the model does, and uvicorn writes the head and the body of every
response in two system calls. So a ``POST /v2/models/{name}[/versions/{version}]/infer`` whose whole body has
arrived with its head is answered here, straight from the parser's callbacks: one task, one write.

Admission is decided with the head (``InferenceService.authorize``, then ``admit``): a request whose token
may not call the model (401, 403), is over its rate (429), or that the model cannot take now (429) is answered
as soon as its body has gone by, and that body is neither kept nor decoded, nor is a task made for it. Under
overload that is most requests, so a refusal must cost a fraction of an answer.

A refusal says ``retry-after: 1``. A connection that asks again sooner and is refused again gets that
refusal only when its second has passed: a client that ignores Retry-After cannot turn the server's time
into refusals (64 hey workers made 18,000 a second, and the model starved of CPU), while one that honours
it is answered at once, like any other. Requests that are let in are never held.

A body that comes in several reads (clients write a head and a body of more than a few KB in separate
segments: the mlp's 8 KB JSON body mostly did) stays on this path while the rest arrives within
``HOT_BODY_WAIT_S``, its declared length reserved from the body budget meanwhile; one that takes longer is
handed to the regular path with the bytes read so far, and that path's deadlines (408) apply.

Only the plain case takes this path; everything else goes the regular way, through the same routes and the
body reader with its deadlines: another method or path, a query string or escaped path, no Content-Length or
one over the limit, a body over ``HOT_MAX_SPLIT_BODY`` that does not come with its head, a full body budget,
``Expect: 100-continue``, an ``Origin`` header (browsers: CORS), and a request pipelined behind one still
being answered. Answers, errors and headers are the regular route's, byte for byte where it matters (tests
prove it).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from time import perf_counter

import orjson

from conveyor.errors import ConveyorError
from conveyor.frontend.bodies import BodyReader
from conveyor.frontend.connections import DeadlineHttpProtocol
from conveyor.frontend.http_errors import BACKPRESSURE, CHALLENGE, RETRY_AFTER_S, status_for
from conveyor.frontend.rest import (
    JSON,
    OCTET,
    check_content_type,
    header_safe,
    new_request_id,
    parse_header_length,
)
from conveyor.observe import trace
from conveyor.observe.recorder import RequestRecorder, error_version
from conveyor.protocol.service import EncodedRequest, EncodedResponse, InferenceService

log = logging.getLogger("conveyor.frontend")
_PREFIX, _SUFFIX = b"/v2/models/", b"/infer"
# How long the rest of a body may take to arrive, and how big it may be, for its request to stay here.
HOT_BODY_WAIT_S = 0.05
HOT_MAX_SPLIT_BODY = 1024 * 1024
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_TOO_MANY = _STATUS_LINES[429]
_STATUS_OF = {line: status for status, line in _STATUS_LINES.items()}
_JSON_TYPE = b"content-type: " + JSON.encode() + b"\r\n"
_OCTET_TYPE = b"content-type: " + OCTET.encode() + b"\r\n"
_CHALLENGE = b"www-authenticate: " + CHALLENGE.encode() + b"\r\n"


class _HotRequest:
    """One request on the hot path. Stands in for uvicorn's RequestResponseCycle where the protocol looks
    at its cycle (pipelining, disconnects, graceful shutdown): the attributes below are the ones it reads."""

    __slots__ = (
        "chunks",
        "client_id",
        "content_type",
        "declared",
        "disconnected",
        "header_length",
        "headers",
        "keep_alive",
        "label_version",
        "message_event",
        "model",
        "more_body",
        "parent",
        "refusal",
        "request_id",
        "reserved",
        "response_complete",
        "started",
        "traceparent",
        "version",
    )

    def __init__(
        self,
        model: str,
        version: str | None,
        keep_alive: bool,
        declared: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.model = model
        self.version = version
        self.headers = headers  # uvicorn's list of this request's pairs (a new one per request): not copied
        self.keep_alive = keep_alive
        self.declared = declared
        self.reserved = 0  # budget held while the body arrives in several reads
        self.content_type: bytes | None = None
        self.header_length: bytes | None = None
        self.client_id: bytes | None = None
        self.traceparent: str | None = None  # this server's span: decoded once, encoded once in the answer
        self.parent: bytes | None = None  # the caller's traceparent: the exported span's parent (otlp.py)
        # For the metrics and the access log (observe/recorder.py): from a complete head to the answer, and
        # the version that answered (the URL's until known).
        self.started = perf_counter()
        self.label_version = version
        self.request_id: str | None = None
        self.chunks: list[bytes] = []
        # Refused with the head (no token, one that may not, a full queue): the body is read past, not kept
        self.refusal: ConveyorError | None = None
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.message_event = self  # uvicorn calls cycle.message_event.set(): nothing waits here

    def set(self) -> None:
        pass


def parse_infer_path(url: bytes) -> tuple[str, str | None] | None:
    """(model, version) of a plain V2 infer URL, or None: anything unusual takes the regular path."""
    if not (url.startswith(_PREFIX) and url.endswith(_SUFFIX)) or b"?" in url or b"%" in url:
        return None
    parts = url[len(_PREFIX) : -len(_SUFFIX)].split(b"/")
    if len(parts) == 1 and parts[0]:
        return parts[0].decode("latin-1"), None
    if len(parts) == 3 and parts[1] == b"versions" and parts[0] and parts[2]:
        return parts[0].decode("latin-1"), parts[2].decode("latin-1")
    return None


def hot_protocol(
    service: InferenceService, bodies: BodyReader, recorder: RequestRecorder | None = None
) -> type[DeadlineHttpProtocol]:
    """uvicorn's protocol class for one server, answering V2 inference over ``service`` on the hot path;
    ``recorder`` counts every answer (None: metrics and the access log are off)."""

    admit, authorize = service.admit, service.authorize

    def _release(hot: _HotRequest) -> None:
        bodies.budget.release(hot.reserved)
        hot.reserved = 0

    class HotPathProtocol(DeadlineHttpProtocol):
        _hot: _HotRequest | None = None  # a hot request whose body is still arriving
        _hot_timer: asyncio.TimerHandle | None = None  # armed while it is
        _refused_at = -float(RETRY_AFTER_S)  # loop time of this connection's last 429

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            hot = self._hot
            if hot is None or self._hot_timer is not None:
                return
            if self.transport.is_closing():  # malformed: uvicorn answered 400
                self._hot = None
                return
            if hot.refusal is not None:  # read past the rest, no budget needed; as long as any split body
                self._hot_timer = self.loop.call_later(HOT_BODY_WAIT_S, self._refuse_unfinished)
                return
            # The body did not all come with the head: wait a little for the rest, its room reserved.
            if hot.declared <= HOT_MAX_SPLIT_BODY and bodies.budget.reserve(hot.declared):
                hot.reserved = hot.declared
                self._hot_timer = self.loop.call_later(HOT_BODY_WAIT_S, self._hand_over)
            else:
                self._hand_over()

        def _hand_over(self) -> None:
            """The regular path reads the rest of the body, from the bytes read so far."""
            self._hot_timer = None
            hot, self._hot = self._hot, None
            if hot is None or self.transport.is_closing():
                return
            _release(hot)
            DeadlineHttpProtocol.on_headers_complete(self)
            body = b"".join(hot.chunks)
            if body and self.cycle is not None:
                DeadlineHttpProtocol.on_body(self, body)

        def _refuse_unfinished(self) -> None:
            """A refused request's body did not finish arriving in time: answer, and close the connection
            rather than read the rest."""
            self._hot_timer = None
            hot, self._hot = self._hot, None
            if hot is None or hot.refusal is None or self.transport.is_closing():
                return
            hot.keep_alive = False
            self.cycle = hot  # type: ignore[assignment]  # see _HotRequest
            self._finish(hot, _refused(hot, hot.refusal))

        def connection_lost(self, exc: Exception | None) -> None:
            hot, self._hot = self._hot, None
            if hot is not None:  # left while its body was arriving
                self._cancel_hot_timer()
                _release(hot)
            super().connection_lost(exc)

        def _cancel_hot_timer(self) -> None:
            if self._hot_timer is not None:
                self._hot_timer.cancel()
                self._hot_timer = None

        def on_headers_complete(self) -> None:
            hot = self._take(self.url) if self.parser.get_method() == b"POST" else None
            if hot is None:
                super().on_headers_complete()
                return
            self._cancel_head_deadline()  # as the regular path does: the request has its head
            self._hot = hot

        def _take(self, url: bytes) -> _HotRequest | None:
            target = parse_infer_path(url)
            cycle = self.cycle
            if (
                target is None
                or self.expect_100_continue
                or self.limit_concurrency is not None
                or (cycle is not None and not cycle.response_complete)  # pipelined: keep the order
                or self.parser.should_upgrade()
            ):
                return None
            declared = content_type = header_length = client_id = authorization = traceparent = None
            for name, value in self.headers:
                if name == b"content-length":
                    declared = value
                elif name == b"content-type":
                    content_type = value
                elif name == b"inference-header-content-length":
                    header_length = value
                elif name == b"x-request-id":
                    client_id = value
                elif name == b"origin":  # a browser's: the regular path adds CORS headers (frontend/cors.py)
                    return None
                elif name == b"authorization":
                    authorization = value
                elif name == b"traceparent":
                    traceparent = value
            if declared is None or not declared.isdigit() or int(declared) > bodies.max_bytes:
                return None  # chunked, malformed or too large: the regular path answers it
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            hot = _HotRequest(target[0], target[1], keep_alive, int(declared), self.headers)
            hot.content_type, hot.header_length, hot.client_id = content_type, header_length, client_id
            # This server's span (observe/trace.py): logged, echoed, and the next hop's parent.
            hot.traceparent = trace.span(_latin1(traceparent))
            hot.parent = traceparent
            try:
                authorize(hot.model, hot.version, None if authorization is None else _latin1(authorization))
                admit(hot.model, hot.version)
            except ConveyorError as exc:  # 401, 403, 429: answered without the body
                hot.refusal = exc
            return hot

        def on_body(self, body: bytes) -> None:
            hot = self._hot
            if hot is not None:
                if hot.refusal is None:
                    hot.chunks.append(body)
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            hot = self._hot
            if hot is None:
                super().on_message_complete()
                return
            self._hot = None
            self._cancel_hot_timer()
            hot.more_body = False
            self.cycle = hot  # type: ignore[assignment]  # see _HotRequest
            if hot.refusal is not None:
                # No task: answered on the next loop step (not inside the parser, so a request pipelined
                # behind this one finds it still open and waits its turn, as any other does), or when the
                # Retry-After of this connection's last refusal has passed, if it asked again before.
                early = self._refused_at + RETRY_AFTER_S - self.loop.time()
                parts = _refused(hot, hot.refusal)
                if early > 0:
                    self.loop.call_later(early, self._finish, hot, parts)
                else:
                    self.loop.call_soon(self._finish, hot, parts)
                return
            task = self.loop.create_task(self._answer(hot))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        async def _answer(self, hot: _HotRequest) -> None:
            body = hot.chunks[0] if len(hot.chunks) == 1 else b"".join(hot.chunks)
            hot.chunks = []
            budget = bodies.budget
            if not hot.reserved and not budget.reserve(len(body)):
                out = _error(hot, 503, budget.refusal())
            else:
                hot.reserved = hot.reserved or len(body)
                try:
                    out = await _infer(service, hot, body)
                finally:
                    _release(hot)
            self._finish(hot, out)

        def _finish(self, hot: _HotRequest, parts: list[bytes]) -> None:
            hot.response_complete = True
            if hot.disconnected or self.transport.is_closing():
                return  # the client left: nothing to answer, not an error
            head = parts[0]
            if head is _TOO_MANY:
                self._refused_at = self.loop.time()
            if recorder is not None:
                recorder.record(
                    hot.model,
                    hot.label_version,
                    _STATUS_OF.get(head, 500),
                    perf_counter() - hot.started,
                    hot.request_id or _latin1(hot.client_id),
                    hot.traceparent,
                    _latin1(hot.parent),
                )
            defaults = self.server_state.default_headers  # the date header uvicorn keeps current
            extra = [b"%s: %s\r\n" % (n, v) for n, v in defaults]
            if not hot.keep_alive:
                extra.append(b"connection: close\r\n")
            self.transport.write(b"".join([head, *extra, *parts[1:]]))
            if not hot.keep_alive:
                self.transport.close()
            self.on_response_complete()

    return HotPathProtocol


async def _infer(service: InferenceService, hot: _HotRequest, body: bytes) -> list[bytes]:
    """The regular route's work and answer, as [status line, headers..., blank line + body]."""
    request_id = hot.client_id.decode("latin-1") if hot.client_id else new_request_id()
    hot.request_id = request_id
    try:
        check_content_type(_latin1(hot.content_type))
        json_length = parse_header_length(_latin1(hot.header_length))
        # headers positional (after parent, None): a keyword costs more than the field
        request = EncodedRequest(
            hot.model, hot.version, body, json_length, request_id, hot.traceparent, None, hot.headers
        )
        resp = await service.infer(request)
    except ConveyorError as exc:
        hot.label_version = error_version(exc, hot.version)
        status = status_for(exc)
        if status >= 500:
            log.error("request %s failed: %s", hot.model, exc)
        return _error(hot, status, exc.message)
    except Exception as exc:  # a bug answers 500 like the regular path, and the connection lives on
        log.exception("unexpected error on /v2/models/%s/infer", hot.model)
        return _error(hot, 500, f"internal error: {type(exc).__name__}")
    hot.label_version = resp.model_version
    return _ok(hot, resp, request_id)


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")  # as Starlette decodes header values


def _ok(hot: _HotRequest, resp: EncodedResponse, request_id: str) -> list[bytes]:
    # The answer's id may come from the body ("id"): into the header only when it is a valid header value.
    if hot.client_id is None and header_safe(resp.request_id):
        request_id = resp.request_id
    rid = request_id.encode("latin-1")
    body = resp.body
    if resp.json_length is None:
        head = b"%scontent-length: %d\r\nx-request-id: %s\r\n" % (_JSON_TYPE, len(body), rid)
    else:
        head = b"%scontent-length: %d\r\nx-request-id: %s\r\ninference-header-content-length: %d\r\n" % (
            _OCTET_TYPE,
            len(body),
            rid,
            resp.json_length,
        )
    span = hot.traceparent.encode() if hot.traceparent is not None else b""
    return [_STATUS_LINES[200], head, b"traceparent: %s\r\n\r\n" % span, body]


def _refused(hot: _HotRequest, exc: ConveyorError) -> list[bytes]:
    return _error(hot, status_for(exc), exc.message)


def _error(hot: _HotRequest, status: int, message: str) -> list[bytes]:
    body = orjson.dumps({"error": message})
    head = [b"%scontent-length: %d\r\n" % (_JSON_TYPE, len(body))]
    if hot.client_id is not None:
        head.append(b"x-request-id: %s\r\n" % hot.client_id)
    if hot.traceparent is not None:
        head.append(b"traceparent: %s\r\n" % hot.traceparent.encode())
    if status in BACKPRESSURE:
        head.append(b"retry-after: 1\r\n")
    elif status == 401:
        head.append(_CHALLENGE)
    return [_STATUS_LINES.get(status, _STATUS_LINES[500]), *head, b"\r\n", body]
