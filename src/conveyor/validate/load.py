"""Real HTTP against a V2 endpoint: every row of the data sent once (the answers, for the regression gate),
and load at a concurrency for a while (latencies, throughput, errors, and the server's memory on the way)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from conveyor.errors import InvalidInput, Unavailable
from conveyor.optimize.data import Array, Inputs, row_count
from conveyor.protocol.codec import decode_infer_response, encode_infer_request

Outputs = dict[str, Array]
HEADERS = {"content-type": "application/json"}
REQUEST_TIMEOUT_S = 30.0
MAX_BODIES = 64
"""Distinct request bodies a load cycles through (from the data's rows)."""


def bodies(inputs: Inputs, batch: int, most: int = MAX_BODIES) -> list[bytes]:
    """V2 JSON bodies of ``batch`` consecutive rows each (wrapping around the data), at most ``most``."""
    rows = row_count(inputs)
    out = []
    for i in range(min(most, max(1, -(-rows // batch)))):
        idx = np.arange(i * batch, (i + 1) * batch) % rows
        body, _ = encode_infer_request({k: v[idx] for k, v in inputs.items()})
        out.append(body)
    return out


def answers(
    client: httpx.Client, url: str, inputs: Inputs, batch: int, headers: dict[str, str] | None = None
) -> Outputs:
    """The endpoint's outputs for every row, ``batch`` rows per request, in order. A request that fails is
    Unavailable naming the rows and the answer (the model broke on valid data: the gate cannot judge)."""
    rows = row_count(inputs)
    parts: list[Outputs] = []
    for start in range(0, rows, batch):
        body, _ = encode_infer_request({k: v[start : start + batch] for k, v in inputs.items()})
        try:
            r = client.post(
                url, content=body, headers={**HEADERS, **(headers or {})}, timeout=REQUEST_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"rows {start}-{start + batch - 1}: {type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise Unavailable(f"rows {start}-{start + batch - 1}: HTTP {r.status_code}: {r.text[:200]}")
        length = r.headers.get("inference-header-content-length")
        parts.append(decode_infer_response(r.content, int(length) if length else None).as_dict())
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@dataclass
class Load:
    """What one load measured: each answered request's latency (s), the failures by status (0: no
    answer), how long it ran, and the server's resident memory sampled on the way ((t, bytes))."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    def merge(self, other: Load) -> Load:
        """This load and ``other`` (another turn at the same concurrency) as one."""
        failures = dict(self.failures)
        for code, n in other.failures.items():
            failures[code] = failures.get(code, 0) + n
        return Load(
            self.concurrency,
            self.latencies + other.latencies,
            failures,
            self.seconds + other.seconds,
            self.rss + other.rss,
        )

    def numbers(self) -> dict[str, Any]:
        """p50/p99/mean (ms), requests per second, errors: what the gates and the report read."""
        ms = np.asarray(self.latencies) * 1000.0
        done = len(self.latencies)
        return {
            "requests": done + self.errors,
            "errors": self.errors,
            "failures": {str(k): v for k, v in sorted(self.failures.items())},
            "p50_ms": float(np.percentile(ms, 50)) if done else None,
            "p99_ms": float(np.percentile(ms, 99)) if done else None,
            "mean_ms": float(ms.mean()) if done else None,
            "throughput": done / self.seconds if self.seconds > 0 else None,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
        }


def drive(
    url: str,
    payloads: Sequence[bytes],
    *,
    concurrency: int,
    seconds: float,
    sample_rss: Callable[[], int | None] | None = None,
    sample_every: float = 0.25,
    headers: dict[str, str] | None = None,
) -> Load:
    """``concurrency`` callers, each with its own connection, posting ``payloads`` in turn to ``url`` for
    ``seconds``; the caller's thread samples ``sample_rss`` meanwhile."""
    if not payloads:
        raise InvalidInput("no request bodies to send")
    load = Load(concurrency)
    lock = threading.Lock()
    go, stop = threading.Event(), threading.Event()
    # Connections (an SSL context each) are made before the clock starts: not part of what is measured.
    sent = {**HEADERS, **(headers or {})}
    clients = [httpx.Client(timeout=REQUEST_TIMEOUT_S, headers=sent) for _ in range(concurrency)]

    def caller(k: int) -> None:
        mine: list[float] = []
        failed: dict[int, int] = {}
        client = clients[k]
        go.wait()
        i = k
        while not stop.is_set():
            body = payloads[i % len(payloads)]
            i += 1
            start = time.perf_counter()
            try:
                status = client.post(url, content=body).status_code
            except httpx.HTTPError:
                status = 0
            if status == 200:
                mine.append(time.perf_counter() - start)
            else:
                failed[status] = failed.get(status, 0) + 1
        with lock:
            load.latencies += mine
            for code, n in failed.items():
                load.failures[code] = load.failures.get(code, 0) + n

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    go.set()
    try:
        end = began + seconds
        while (now := time.perf_counter()) < end:
            if sample_rss is not None and (rss := sample_rss()) is not None:
                load.rss.append((now - began, rss))
            time.sleep(min(sample_every, max(0.0, end - now)))
        if sample_rss is not None and (rss := sample_rss()) is not None:
            load.rss.append((time.perf_counter() - began, rss))
    finally:
        stop.set()
        load.seconds = time.perf_counter() - began
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT_S + 5)
        for c in clients:
            c.close()
    return load
