"""The load ``conveyor tune`` puts on a server: a fixed number of workers, each on its own keep-alive
connection, sending the next request when the last is answered (closed loop, as ``hey -c N`` does), with
every request's latency kept.

Raw HTTP/1.1 over asyncio protocols with the requests encoded ahead of time, not an HTTP client library:
on a 2-core machine the generator shares the cores with the server it measures, and httpx costs several
times the CPU per request, which would cap what is measured (docs/optimize.md, "Tune").
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

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


def requests_for(host: str, port: int, path: str, bodies: Sequence[bytes]) -> list[bytes]:
    """Whole HTTP/1.1 requests (head and body), one per body, ready to write."""
    out = []
    for body in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
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
        self.error_sample = ""
        self.stopping = False

    def next_request(self) -> bytes:
        request = self.requests[self.next_index]
        self.next_index = (self.next_index + 1) % len(self.requests)
        return request

    def answered(self, sent: float, now: float, ok: bool, what: str) -> None:
        if not self.measure_from <= now <= self.measure_until:
            return  # warm-up, or after the window
        if ok:
            self.latencies.append(now - sent)
        else:
            self.error(what)

    def error(self, what: str) -> None:
        self.errors += 1
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
        self.run.answered(self.sent, now, self.status == 200, f"HTTP {self.status}")
        self._send()

    def _broken(self, what: str) -> None:
        self.broken = True
        self.run.answered(self.sent, time.perf_counter(), False, what)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopping and not self.broken:
            self.run.answered(self.sent, time.perf_counter(), False, f"connection lost: {exc or 'closed'}")
        if not self.done.done():
            self.done.set_result(None)

    def in_flight_since(self) -> float | None:
        return self.sent if self.transport is not None and not self.transport.is_closing() else None


async def _worker_loop(host: str, port: int, run: _Run, workers: list[_Worker]) -> None:
    """One worker slot: connect, run until stopped; a lost connection is reconnected (after a pause, so a
    server that refuses connections is not spun on)."""
    loop = asyncio.get_running_loop()
    while not run.stopping:
        done: asyncio.Future[None] = loop.create_future()
        worker = _Worker(run, done)
        try:
            await loop.create_connection(lambda w=worker: w, host, port)  # type: ignore[misc]
        except OSError as exc:
            run.answered(time.perf_counter(), time.perf_counter(), False, f"cannot connect: {exc}")
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


async def generate(host: str, port: int, path: str, load: Load) -> LoadResult:
    """POST ``load.bodies`` in turn from ``load.concurrency`` workers for ``load.warmup_s`` (not counted)
    plus ``load.duration_s``; latencies of the answers that arrive in the measured window. A request still
    unanswered at the end that was sent before the window began counts as an error (a server that hangs)."""
    requests = requests_for(host, port, path, load.bodies)
    start = time.perf_counter()
    run = _Run(requests, start + load.warmup_s, start + load.warmup_s + load.duration_s)
    workers: list[_Worker] = []
    tasks = [asyncio.create_task(_worker_loop(host, port, run, workers)) for _ in range(load.concurrency)]
    await asyncio.sleep(load.warmup_s)
    cpu_before = time.process_time()
    await asyncio.sleep(max(0.0, run.measure_until - time.perf_counter()))
    cpu_s = time.process_time() - cpu_before
    run.stopping = True
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
    )


def run_load(host: str, port: int, path: str, load: Load) -> LoadResult:
    """``generate`` on an event loop of its own (uvloop's: the least CPU per request)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(generate(host, port, path, load))


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
