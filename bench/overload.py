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

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import paired
import tables
import wire
from models import BenchModel
from servers import ConveyorGateway, ConveyorUp, Server

CONCURRENCY = 64
QUEUE = 4
BOUND = 0.8


@dataclass
class Pair:
    group: str
    saturated: Server  # the default queue
    small: Server  # max_queue_size QUEUE


def pairs() -> list[Pair]:
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


def _row(group: str, server: Server, results: list[load.LoadResult], duration_s: float) -> dict[str, Any]:
    def per_s(code: int) -> list[float]:
        return [r.status.get(code, 0) / duration_s for r in results]

    fives = sum(n for r in results for code, n in r.status.items() if code >= 500)
    p50s = [r.p50_ms for r in results if r.p50_ms is not None]
    p99s = [r.p99_ms for r in results if r.p99_ms is not None]
    return {
        "group": group,
        "queue": server.note,
        "ok_per_s": statistics.median(per_s(200)),
        "ok_per_s_each": [round(x, 1) for x in per_s(200)],
        "refused_per_s": statistics.median(per_s(429)),
        "http_5xx": fives,
        "transport_errors": sum(r.transport_errors for r in results),
        "error_sample": next((r.error_sample for r in results if r.error_sample), ""),
        "p50_ms": statistics.median(p50s) if p50s else None,
        "p99_ms": statistics.median(p99s) if p99s else None,
    }


def measure(
    model: BenchModel,
    body: Path,
    work: Path,
    say: Callable[[str], None],
    *,
    rounds: int = 4,
    duration_s: float = 4.0,
    warmup_s: float = 1.0,
) -> dict[str, Any]:
    """Rows (one per server) and verdicts (one per pair), from interleaved runs at CONCURRENCY."""
    chosen = [p for p in pairs() if not p.saturated.unavailable()]
    servers = [(p.group, s) for p in chosen for s in (p.saturated, p.small)]
    runs: dict[int, list[load.LoadResult]] = {id(s): [] for _, s in servers}
    with paired.all_up([(str(i), s) for i, (_, s) in enumerate(servers)], model, work, "overload"):
        say(f"{model.name}: overload runs at c={CONCURRENCY} over {len(servers)} servers ({rounds} rounds)")
        for i, (group, server) in paired.in_turn(servers, rounds):
            url = server.url(model)
            headers = wire.headers(wire.V2, b"") | server.auth_headers()
            load.run(url, body, CONCURRENCY, warmup_s, headers=headers)
            result = load.run(url, body, CONCURRENCY, duration_s, headers=headers)
            runs[id(server)].append(result)
            ok, refused = result.status.get(200, 0), result.status.get(429, 0)
            say(
                f"overload {group} {server.note} round {i + 1}: {ok / duration_s:,.0f} answered/s, "
                f"{refused / duration_s:,.0f} refused/s, {result.errors - refused} other errors"
            )
    rows = [_row(group, s, runs[id(s)], duration_s) for group, s in servers if runs[id(s)]]
    verdicts = []
    for p in chosen:
        sat, small = runs[id(p.saturated)], runs[id(p.small)]
        if not sat or not small:
            continue
        ratios = [
            b.status.get(200, 0) / a.status.get(200, 0)
            for a, b in zip(sat, small, strict=True)
            if a.status.get(200)
        ]
        ratio = statistics.median(ratios) if ratios else None
        broken = sum(
            r.transport_errors + sum(n for c, n in r.status.items() if c >= 500) for r in small + sat
        )
        met = ratio is not None and ratio >= BOUND and broken == 0
        verdicts.append(
            {
                "group": p.group,
                "target": f"answered/s, queue {QUEUE} ≥ {BOUND:g}× default queue, c={CONCURRENCY}, no 5xx",
                "ratio": ratio,
                "ratios_each": [round(r, 3) for r in ratios],
                "broken": broken,
                "status": "met" if met else "missed",
            }
        )
    return {
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "duration_s": duration_s,
        "rows": rows,
        "verdicts": verdicts,
    }


TITLE = "## Overload"
TEXT = (
    f"One deployment twice, both up at once: the default queue against max_queue_size {QUEUE}, hey with "
    f"{CONCURRENCY} workers that ignore Retry-After, batch-1 V2 JSON, runs interleaved (bench/overload.py). "
    "answered/s counts 200s only; p50/p99 are hey's over every response, refusals included (a refusal of a "
    "retry sent before its Retry-After is answered when that has passed)."
)
ROW_COLUMNS = ["deployment", "queue", "answered/s", "refused/s", "5xx", "broken conn.", "p50 ms", "p99 ms"]
VERDICT_COLUMNS = ["deployment", "target", "ratio", "per round", "status"]


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


def verdict_cells(v: dict[str, Any]) -> list[str]:
    ratio = "-" if v["ratio"] is None else f"{v['ratio']:.2f}×"
    return [v["group"], v["target"], ratio, ", ".join(f"{x:.2f}" for x in v["ratios_each"]), v["status"]]


def markdown(result: dict[str, Any]) -> list[str]:
    rows = [row_cells(r) for r in result["rows"]]
    return tables.section(
        TITLE, TEXT, (ROW_COLUMNS, rows), (VERDICT_COLUMNS, [verdict_cells(v) for v in result["verdicts"]])
    )


def print_tables(result: dict[str, Any]) -> None:
    title = f"Overload, c={CONCURRENCY} (interleaved, medians)"
    tables.show(title, ROW_COLUMNS, [row_cells(r) for r in result["rows"]], caption=TEXT, right_from=2)
    tables.show("Overload: the verdict", VERDICT_COLUMNS, [verdict_cells(v) for v in result["verdicts"]])
