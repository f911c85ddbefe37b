"""What metrics and logging cost on the request path (issue 14): the budget is 5% of throughput.

Per deployment (`conveyor serve`, and `conveyor up` with 1 replica: gateway and replica both count, and the
control plane scrapes them every 2 s), one server with Conveyor's defaults (metrics on, the 1% sampled access
log, JSON-lines log files) and one with all of it off (CONVEYOR_METRICS_ENABLED=false,
CONVEYOR_ACCESS_LOG_SAMPLE=0, CONVEYOR_LOG_TO_FILE=false), up at once; hey's 32 workers send batch-1 V2 JSON
to the tiny model (the model that costs least, so the server's own work weighs most), runs interleaved
(bench/pairs.py). The bound: with the defaults, at least 95% of the answers a second of the same server
with everything off, no 5xx and no broken connection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pairs as bench_pairs
import tables
from models import BenchModel
from pairs import Pair
from servers import ConveyorGateway, ConveyorUp

CONCURRENCY = 32
BOUND = 0.95
OFF = {
    "CONVEYOR_METRICS_ENABLED": "false",
    "CONVEYOR_ACCESS_LOG_SAMPLE": "0",
    "CONVEYOR_LOG_TO_FILE": "false",
}
ON_NOTE, OFF_NOTE = "defaults: metrics, 1% access log, log files", "metrics and logs off"


def pairs() -> list[Pair]:
    """Per deployment: everything off (base) and the defaults (variant)."""
    return [
        Pair(
            "`conveyor serve`",
            ConveyorGateway(replicas=1, note=OFF_NOTE, env=OFF),
            ConveyorGateway(replicas=1, note=ON_NOTE),
        ),
        Pair(
            "`conveyor up`, 1 replica",
            ConveyorUp(replicas=1, note=OFF_NOTE, env=OFF),
            ConveyorUp(replicas=1, note=ON_NOTE),
        ),
    ]


def measure(
    model: BenchModel, body: Path, work: Path, say: Callable[[str], None], **timing: Any
) -> dict[str, Any]:
    """Rows (one per server) and verdicts (one per pair), from interleaved runs at CONCURRENCY; ``timing``:
    rounds, duration_s, warmup_s (bench/pairs.py)."""
    timing = {"rounds": 4, "duration_s": 4.0, "warmup_s": 1.0} | timing
    target = f"answered/s, defaults ≥ {BOUND:g}× metrics and logs off, c={CONCURRENCY}"
    return bench_pairs.measure(
        pairs(),
        model,
        body,
        work,
        say,
        tag="observability",
        concurrency=CONCURRENCY,
        bound=BOUND,
        target=target,
        **timing,
    )


TITLE = "## Metrics and logging cost"
TEXT = (
    "One deployment twice, both up at once: Conveyor's defaults (metrics, the 1% sampled access log, "
    "JSON-lines log files) against all of it off; hey with "
    f"{CONCURRENCY} workers, batch-1 V2 JSON to the tiny model, runs interleaved (bench/observe_cost.py). "
    "answered/s counts 200s; the ratio is the median of the per-round ratios, defaults / off. Server CPU "
    "is the whole process tree's per request (for `conveyor up`: control plane, gateway, replica); its "
    "ratio, defaults / off, is beside the verdict, not judged: steadier than throughput on a shared machine."
)
ROW_COLUMNS = [
    "deployment",
    "what",
    "answered/s",
    "server CPU µs/req",
    "5xx",
    "broken conn.",
    "p50 ms",
    "p99 ms",
]


def row_cells(r: dict[str, Any]) -> list[str]:
    return [
        r["group"],
        r["note"],
        tables.num(r["ok_per_s"]),
        tables.num(r.get("server_cpu_us")),
        str(r["http_5xx"]),
        str(r["transport_errors"]),
        tables.num(r["p50_ms"], 1),
        tables.num(r["p99_ms"], 1),
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    return bench_pairs.markdown(result, TITLE, TEXT, ROW_COLUMNS, row_cells)


def print_tables(result: dict[str, Any]) -> None:
    title = f"Metrics and logging cost, c={CONCURRENCY} (interleaved, medians)"
    bench_pairs.print_tables(result, title, TEXT, ROW_COLUMNS, row_cells)
