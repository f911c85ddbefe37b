"""Overload: a server with a small queue and far more clients than it can serve (issue 12).

Each pair is one deployment twice, both up at once: with the default queue (every request waits its turn: the
saturated throughput) and with ``max_queue_size`` 4 (what it cannot take is refused 429). hey's 64 workers
send batch-1 V2 JSON as fast as they are answered and ignore Retry-After, the worst a client can do. Short
runs go round the four servers in alternating order, as in bench/paired.py; the ratio is the median of the
per-round ratios of answered (200) requests per second. The bound: the small queue answers at least 80% of
what the default one does, with no 5xx and no broken connection.

hey's percentiles cover every response, refusals included; a client that retries before its Retry-After
and is refused again gets that refusal when its second has passed (docs/batching.md, "Overload"), so a p99
near 1 s in a row with 429s is those refusals, not answers.
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

CONCURRENCY = 64
QUEUE = 4
BOUND = 0.8


def pairs() -> list[Pair]:
    """Per deployment: the default queue (base: every request waits its turn, the saturated throughput)
    and max_queue_size QUEUE (variant)."""
    return [
        Pair(
            "`conveyor serve`",
            ConveyorGateway(replicas=1, note="default queue"),
            ConveyorGateway(
                replicas=1, note=f"--max-queue-size {QUEUE}", extra=("--max-queue-size", str(QUEUE))
            ),
        ),
        Pair(
            "`conveyor up`, 2 replicas",
            ConveyorUp(replicas=2, note="default queue"),
            ConveyorUp(replicas=2, note=f"maxQueueSize {QUEUE}", batching={"maxQueueSize": QUEUE}),
        ),
    ]


def measure(
    model: BenchModel, body: Path, work: Path, say: Callable[[str], None], **timing: Any
) -> dict[str, Any]:
    """Rows (one per server) and verdicts (one per pair), from interleaved runs at CONCURRENCY; ``timing``:
    rounds, duration_s, warmup_s (bench/pairs.py)."""
    timing = {"rounds": 4, "duration_s": 4.0, "warmup_s": 1.0} | timing
    target = f"answered/s, queue {QUEUE} ≥ {BOUND:g}× default queue, c={CONCURRENCY}, no 5xx"
    return bench_pairs.measure(
        pairs(),
        model,
        body,
        work,
        say,
        tag="overload",
        concurrency=CONCURRENCY,
        bound=BOUND,
        target=target,
        **timing,
    )


TITLE = "## Overload"
TEXT = (
    f"One deployment twice, both up at once: the default queue against max_queue_size {QUEUE}, hey with "
    f"{CONCURRENCY} workers that ignore Retry-After, batch-1 V2 JSON, runs interleaved (bench/overload.py). "
    "answered/s counts 200s only; p50/p99 are hey's over every response, refusals included (a refusal of a "
    "retry sent before its Retry-After is answered when that has passed)."
)
ROW_COLUMNS = ["deployment", "queue", "answered/s", "refused/s", "5xx", "broken conn.", "p50 ms", "p99 ms"]


def row_cells(r: dict[str, Any]) -> list[str]:
    return [
        r["group"],
        r["queue"],
        tables.num(r["ok_per_s"]),
        tables.num(r["refused_per_s"]),
        str(r["http_5xx"]),
        str(r["transport_errors"]),
        tables.num(r["p50_ms"], 1),
        tables.num(r["p99_ms"], 1),
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    return bench_pairs.markdown(result, TITLE, TEXT, ROW_COLUMNS, row_cells)


def print_tables(result: dict[str, Any]) -> None:
    title = f"Overload, c={CONCURRENCY} (interleaved, medians)"
    bench_pairs.print_tables(result, title, TEXT, ROW_COLUMNS, row_cells)
