"""Real HTTP against a V2 endpoint: every row of the data sent once (the answers, for the regression gate),
and load at a concurrency for a while (latencies, throughput, errors, and the server's memory on the way)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from conveyor import loadgen
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
    """``concurrency`` callers, each on its own keep-alive connection, posting ``payloads`` in turn to ``url``
    for ``seconds`` (conveyor.loadgen: the raw generator tune uses, a fraction of an HTTP client's CPU per
    request, which on a small machine would otherwise cap what is measured); ``sample_rss`` is read
    meanwhile."""
    if not payloads:
        raise InvalidInput("no request bodies to send")
    # No warm-up: every request counts (the soak allows no error, not even in its first moments).
    spec = loadgen.Load(
        payloads,
        concurrency,
        warmup_s=0.0,
        duration_s=seconds,
        headers={**HEADERS, **(headers or {})},
    )
    result = loadgen.load_url(url, spec, sampler=sample_rss, sample_every_s=sample_every)
    return Load(concurrency, result.latencies, result.failures, seconds, result.samples)
