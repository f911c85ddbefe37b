"""Load generation with Debian's ``hey``: a fixed-duration POST of one body file, and its summary parsed."""

from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LoadResult:
    requests: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    status: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    error_sample: str = ""
    client_cpu_s: float | None = None  # user + system CPU hey itself spent

    @property
    def errors(self) -> int:
        return self.transport_errors + sum(n for code, n in self.status.items() if code != 200)


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_PCT = re.compile(r"^\s+(\d+)% in ([\d.]+) secs", re.M)
_STATUS = re.compile(r"^\s+\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s+\[(\d+)\]\s+(.+)$", re.M)


def parse(text: str) -> LoadResult:
    """Parse hey's summary; a missing Requests/sec line means hey itself failed."""
    m = _RPS.search(text)
    if not m:
        raise RuntimeError(f"hey printed no summary: {text.strip()[-400:]}")
    result = LoadResult(rps=float(m.group(1)))
    pct = {int(p): round(float(s) * 1000, 3) for p, s in _PCT.findall(text)}
    result.p50_ms, result.p99_ms = pct.get(50), pct.get(99)
    status_part, _, error_part = text.partition("Error distribution:")
    result.status = {int(code): int(n) for code, n in _STATUS.findall(status_part)}
    for count, message in _ERROR.findall(error_part):
        result.transport_errors += int(count)
        result.error_sample = result.error_sample or message.strip()[:200]
    result.requests = sum(result.status.values()) + result.transport_errors
    return result


def mean_ms(row: dict[str, Any]) -> float | None:
    """Mean latency of a load row from Little's law: hey's workers wait for each answer before sending the
    next, so mean = concurrency / throughput (hey's own time per request included). Exact where hey's
    percentiles are not: it prints them at 0.1 ms resolution, too coarse for sub-millisecond c=1 latencies."""
    c, rps = row.get("concurrency"), row.get("rps")
    return c / rps * 1000 if isinstance(c, int) and rps else None


def run(
    url: str,
    body: Path,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 20.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """POST ``body`` to ``url`` from ``concurrency`` workers for ``duration_s``; bounded by a hard timeout."""
    headers = dict(headers or {"content-type": "application/json"})
    content_type = headers.pop("content-type")
    extra = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    argv = [
        "hey",
        "-z",
        f"{duration_s:g}s",
        "-c",
        str(concurrency),
        "-t",
        f"{timeout_s:g}",
        "-m",
        "POST",
        "-T",
        content_type,
        *extra,
        "-D",
        str(body),
        url,
    ]
    before = _children_cpu_s()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    result = parse(done.stdout + done.stderr)
    # hey is the only child that ends in this window (servers are reaped after their runs), so the
    # children's CPU delta is hey's own.
    result.client_cpu_s = _children_cpu_s() - before
    return result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
