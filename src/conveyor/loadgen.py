"""The load ``conveyor tune`` and ``conveyor validate`` put on a server: a fixed number of workers, each
on its own keep-alive connection, sending the next request when the last is answered (closed loop, as
``hey -c N`` does), with every request's latency kept.

Raw HTTP/1.1 over asyncio protocols with the requests encoded ahead of time, not an HTTP client library:
on a 2-core machine the generator shares the cores with the server it measures, and httpx costs several
times the CPU per request, which would cap what is measured (docs/optimize.md, "Tune").
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict, Unpack, cast
from urllib.parse import urlsplit

from conveyor.errors import InvalidInput

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class LoadResult:
    requests: int  # answered within the measured window
    errors: int  # non-200 answers, broken connections, requests unanswered at the end
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    error_sample: str = ""
    client_cpu_us: float | None = None  # this process's CPU per answered request while it measured
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, sorted
    failures: dict[int, int] = field(default_factory=dict)  # by HTTP status; 0: no answer
    samples: list[tuple[float, int]] = field(default_factory=list, repr=False)  # (s since start, value)


@dataclass(frozen=True)
class Address:
    """Where the load goes: ``http(s)://HOST:PORT/PATH`` taken apart once."""

    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> Address:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"cannot load {url!r}: use http(s)://HOST[:PORT]/PATH")
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, path, tls)


def requests_for(
    host: str, port: int, path: str, bodies: Sequence[bytes], headers: Mapping[str, str] | None = None
) -> list[bytes]:
    """Whole HTTP/1.1 requests (head and body), one per body, ready to write; ``headers`` replace or add to
    the JSON content-type (the V2 binary extension's, for instance)."""
    fields = {"content-type": "application/json", **(headers or {})}
    extra = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    out = []
    for body in bodies:
        head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}content-length: {len(body)}\r\n\r\n"
        out.append(head.encode() + body)
    return out


class _Run:
    """What the workers share: the requests to send, the window, and what was measured in it."""

    def __init__(self, requests: list[bytes], measure_from: float, measure_until: float) -> None:
        self.requests = requests
        self.next_index = 0
        self.measure_from = measure_from
        self.measure_until = measure_until
        self.latencies: list[float] = []
        self.errors = 0
        self.failures: dict[int, int] = {}
        self.error_sample = ""
        self.stopping = False

    def next_request(self) -> bytes:
        request = self.requests[self.next_index]
        self.next_index = (self.next_index + 1) % len(self.requests)
        return request

    def answered(self, sent: float, now: float, status: int, what: str) -> None:
        """One request's end: ``status`` 200 is an answer, any other (0: none came) a failure."""
        if not self.measure_from <= now <= self.measure_until:
            return  # warm-up, or after the window
        if status == 200:
            self.latencies.append(now - sent)
        else:
            self.error(what, status)

    def error(self, what: str, status: int = 0) -> None:
        self.errors += 1
        self.failures[status] = self.failures.get(status, 0) + 1
        self.error_sample = self.error_sample or what


class _Worker(asyncio.Protocol):
    """One connection: send, read one whole answer (by its content-length), send the next."""

    def __init__(self, run: _Run, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need: int | None = None  # bytes of the whole answer, once its head is read
        self.status = 0
        self.sent = 0.0
        self.broken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.run.stopping:
            self.transport.close()
            return
        self.buffer.clear()
        self.need = None
        self.sent = time.perf_counter()
        self.transport.write(self.run.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need is None:
            end = self.buffer.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = _content_length(head)
            if length is None:
                self._broken("an answer without content-length")
                return
            self.status = int(head[9:12]) if head[9:12].isdigit() else 0
            self.need = end + len(_HEAD_END) + length
        if len(self.buffer) < self.need:
            return
        now = time.perf_counter()
        self.run.answered(self.sent, now, self.status, f"HTTP {self.status}")
        self._send()

    def _broken(self, what: str) -> None:
        self.broken = True
        self.run.answered(self.sent, time.perf_counter(), 0, what)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopping and not self.broken:
            self.run.answered(self.sent, time.perf_counter(), 0, f"connection lost: {exc or 'closed'}")
        if not self.done.done():
            self.done.set_result(None)

    def in_flight_since(self) -> float | None:
        return self.sent if self.transport is not None and not self.transport.is_closing() else None


async def _worker_loop(address: Address, run: _Run, workers: list[_Worker]) -> None:
    """One worker slot: connect, run until stopped; a lost connection is reconnected (after a pause, so a
    server that refuses connections is not spun on)."""
    loop = asyncio.get_running_loop()
    while not run.stopping:
        done: asyncio.Future[None] = loop.create_future()
        worker = _Worker(run, done)
        try:
            await loop.create_connection(
                lambda w=worker: w,  # type: ignore[misc]
                address.host,
                address.port,
                ssl=address.tls,
            )
        except OSError as exc:
            run.answered(time.perf_counter(), time.perf_counter(), 0, f"cannot connect: {exc}")
            await asyncio.sleep(0.05)
            continue
        workers.append(worker)
        await done
        if not run.stopping:
            await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Load:
    """What every trial sends, for how long, and how long a server may take to start and stop."""

    bodies: Sequence[bytes]
    concurrency: int
    warmup_s: float
    duration_s: float
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    headers: Mapping[str, str] | None = None
    """Headers of every request besides content-length (default: content-type application/json)."""


Sampler = Callable[[], int | None]
"""Read while the load runs (a server's resident memory, say), in a thread so a slow read delays no request;
None: nothing to record this time."""


async def _sample(sampler: Sampler, every_s: float, began: float, into: list[tuple[float, int]]) -> None:
    while True:
        value = await asyncio.to_thread(sampler)
        if value is not None:
            into.append((time.perf_counter() - began, value))
        await asyncio.sleep(every_s)


class Options(TypedDict, total=False):
    tls: ssl.SSLContext | None
    """Speak TLS with this context (https)."""
    sampler: Sampler | None
    sample_every_s: float
    """How often ``sampler`` is read (default 0.25 s)."""


async def generate(host: str, port: int, path: str, load: Load, **options: Unpack[Options]) -> LoadResult:
    """POST ``load.bodies`` in turn from ``load.concurrency`` workers for ``load.warmup_s`` (not counted)
    plus ``load.duration_s``; latencies of the answers that arrive in the measured window. A request still
    unanswered at the end that was sent before the window began counts as an error (a server that hangs).
    ``sampler`` is read every ``sample_every_s`` of the measured window, and once at its end."""
    address = Address(host, port, path, options.get("tls"))
    sampler = options.get("sampler")
    requests = requests_for(host, port, path, load.bodies, load.headers)
    start = time.perf_counter()
    run = _Run(requests, start + load.warmup_s, start + load.warmup_s + load.duration_s)
    workers: list[_Worker] = []
    tasks = [asyncio.create_task(_worker_loop(address, run, workers)) for _ in range(load.concurrency)]
    await asyncio.sleep(load.warmup_s)
    samples: list[tuple[float, int]] = []
    sampling = None
    if sampler is not None:
        sampling = asyncio.create_task(
            _sample(sampler, options.get("sample_every_s", 0.25), run.measure_from, samples)
        )
    cpu_before = time.process_time()
    await asyncio.sleep(max(0.0, run.measure_until - time.perf_counter()))
    cpu_s = time.process_time() - cpu_before
    run.stopping = True
    if sampling is not None and sampler is not None:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        if (value := await asyncio.to_thread(sampler)) is not None:
            samples.append((time.perf_counter() - run.measure_from, value))
    for w in workers:
        since = w.in_flight_since()
        if since is not None and since < run.measure_from:
            run.error("no answer within the measured window")
    for w in workers:
        if w.transport is not None:
            w.transport.close()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    lat = sorted(run.latencies)
    n = len(lat)
    return LoadResult(
        requests=n,
        errors=run.errors,
        rps=n / load.duration_s,
        p50_ms=percentile_ms(lat, 0.50),
        p99_ms=percentile_ms(lat, 0.99),
        error_sample=run.error_sample,
        client_cpu_us=cpu_s / n * 1e6 if n else None,
        latencies=lat,
        failures=dict(sorted(run.failures.items())),
        samples=samples,
    )


def run_load(host: str, port: int, path: str, load: Load, **options: Unpack[Options]) -> LoadResult:
    """``generate`` on an event loop of its own (uvloop's: the least CPU per request)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(generate(host, port, path, load, **options))


def load_url(
    url: str, load: Load, sampler: Sampler | None = None, sample_every_s: float = 0.25
) -> LoadResult:
    """``run_load`` against ``http(s)://HOST:PORT/PATH``."""
    t = Address.from_url(url)
    return run_load(t.host, t.port, t.path, load, tls=t.tls, sampler=sampler, sample_every_s=sample_every_s)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def percentile_ms(sorted_s: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted latencies in seconds, in ms."""
    if not sorted_s:
        return None
    index = min(len(sorted_s) - 1, max(0, math.ceil(q * len(sorted_s)) - 1))
    return sorted_s[index] * 1000
