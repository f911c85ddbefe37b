"""The load generator of tune and validate against a small HTTP server on loopback: latencies of the answers
in the window, non-200 answers and lost connections counted as errors by status, the warm-up left out,
headers sent, a sampler read on the way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import ClassVar

from conveyor.loadgen import Load, LoadResult, generate

BODY = b'{"outputs": []}'


class _Server(asyncio.Protocol):
    """Answers each request (read up to its body's end) after ``delay_s``; every ``fail_every``-th with 503;
    closes the connection instead of answering the ``close_at``-th."""

    count = 0

    heads: ClassVar[list[bytes]] = []

    def __init__(self, delay_s: float, fail_every: int, close_at: int) -> None:
        self.delay_s, self.fail_every, self.close_at = delay_s, fail_every, close_at
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        fields = (line.partition(b":") for line in head.split(b"\r\n"))
        length = int(next(v for k, _, v in fields if k == b"content-length"))
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        _Server.heads.append(head)
        _Server.count += 1
        n = _Server.count
        if n == self.close_at:
            self.transport.close()
            return
        status = b"503 Service Unavailable" if self.fail_every and n % self.fail_every == 0 else b"200 OK"
        answer = b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY
        asyncio.get_running_loop().call_later(self.delay_s, self.transport.write, answer)


@contextlib.asynccontextmanager
async def _serving(delay_s: float = 0.001, fail_every: int = 0, close_at: int = 0) -> AsyncIterator[int]:
    _Server.count = 0
    _Server.heads = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(delay_s, fail_every, close_at), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _load(port: int, concurrency: int = 4) -> LoadResult:
    bodies = [b'{"inputs": []}', b'{"inputs": [1]}']
    load = Load(bodies=bodies, concurrency=concurrency, warmup_s=0.2, duration_s=0.5)
    return await asyncio.wait_for(generate("127.0.0.1", port, "/v2/models/m/versions/1/infer", load), 10)


def test_latencies_of_answered_requests_and_no_errors() -> None:
    async def main() -> tuple[LoadResult, int]:
        async with _serving(delay_s=0.002) as port:
            return await _load(port), _Server.count

    result, served = asyncio.run(main())
    assert result.errors == 0 and result.requests > 50
    assert result.requests < served  # the warm-up's answers are not counted
    assert result.p50_ms is not None and result.p99_ms is not None
    assert 2.0 <= result.p50_ms <= result.p99_ms < 500
    assert abs(result.rps - result.requests / 0.5) < 1e-6
    assert len(result.latencies) == result.requests and result.client_cpu_us is not None


def test_non_200_answers_and_a_lost_connection_are_errors() -> None:
    async def main() -> LoadResult:
        async with _serving(fail_every=10, close_at=150) as port:
            return await _load(port, concurrency=2)

    result = asyncio.run(main())
    assert result.requests > 0 and result.errors >= 2
    assert result.error_sample.startswith(("HTTP 503", "connection lost"))
    assert set(result.failures) <= {0, 503} and result.failures.get(503, 0) >= 1
    assert sum(result.failures.values()) == result.errors


def test_headers_go_with_every_request_and_the_sampler_is_read_through_the_window() -> None:
    reads: list[int] = []

    def sampler() -> int:
        reads.append(len(reads))
        return 1000 + len(reads)

    async def main() -> LoadResult:
        async with _serving() as port:
            load = Load(
                bodies=[b"{}"],
                concurrency=2,
                warmup_s=0.0,
                duration_s=0.6,
                headers={"authorization": "Bearer t0ken"},
            )
            run = generate("127.0.0.1", port, "/x", load, sampler=sampler, sample_every_s=0.1)
            return await asyncio.wait_for(run, 10)

    result = asyncio.run(main())
    assert result.errors == 0 and result.requests > 10
    assert _Server.heads and all(b"authorization: Bearer t0ken" in h for h in _Server.heads)
    assert all(b"content-type: application/json" in h for h in _Server.heads)
    assert 4 <= len(result.samples) == len(reads) <= 10  # every 0.1 s of 0.6 s, and once at the end
    times = [t for t, _ in result.samples]
    assert times == sorted(times) and times[-1] >= 0.5
    assert [v for _, v in result.samples] == [1001 + i for i in range(len(reads))]
