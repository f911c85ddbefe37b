"""The stability gate: a soak of steady load; no request may fail and the server's resident memory may not
grow by more than a bound from the start of the soak to its end. Pure: numbers in, checks out."""

from __future__ import annotations

from typing import Any

from conveyor.validate.gates import StabilityGate
from conveyor.validate.verdict import Check, GateResult

MIB = 1024 * 1024
MAX_POINTS = 240
"""Memory samples kept for the report (evenly thinned)."""


def judge(gate: StabilityGate, load: dict[str, Any], rss: list[tuple[float, int]]) -> GateResult:
    """Checks of a soak's numbers (``load.Load.numbers``) and memory samples ((seconds, bytes))."""
    result = GateResult("stability")
    result.checks.append(Check("errors", load["errors"], gate.max_errors, unit="requests"))
    step = max(1, -(-len(rss) // MAX_POINTS))
    kept = rss[::step] if not rss or rss[::step][-1] == rss[-1] else [*rss[::step], rss[-1]]
    result.numbers = {"load": load, "rss": [[round(t, 3), b] for t, b in kept]}
    if len(rss) < 2:
        result.error = "the server's resident memory could not be read (no /proc entry, no /metrics)"
        return result
    start, end = rss[0][1], rss[-1][1]
    growth = (end - start) / MIB
    result.numbers.update(
        rss_start_mb=start / MIB, rss_end_mb=end / MIB, rss_peak_mb=max(b for _, b in rss) / MIB
    )
    result.checks.append(Check("resident memory growth", growth, gate.max_rss_growth_mb, unit="MiB"))
    return result
