"""Pairs of one deployment, up at once and measured in turn: the loop behind the sections that judge a
ratio between two variants of the same server (bench/overload.py, bench/observe_cost.py).

Each pair is a base and a variant; every server of every pair is up for the whole run, and short runs go round
them in alternating order (bench/paired.py), so a machine slowing down slows both sides of a ratio alike. The
ratio of a pair is the median of its per-round ratios of answered (200) requests per second, variant / base.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cpu
import load
import paired
import tables
import wire
from models import BenchModel
from servers import Server


@dataclass
class Pair:
    group: str
    base: Server
    variant: Server


@dataclass
class PairRuns:
    pair: Pair
    base: list[load.LoadResult]
    variant: list[load.LoadResult]
    base_cpu_us: list[float | None] = field(default_factory=list)  # server CPU per request, per round
    variant_cpu_us: list[float | None] = field(default_factory=list)

    def cpu_ratios(self) -> list[float]:
        """Per round, the variant's server CPU per request over the base's: where the time goes, steadier
        than throughput on a shared machine (not judged)."""
        return [
            v / b for b, v in zip(self.base_cpu_us, self.variant_cpu_us, strict=True) if b and v is not None
        ]

    def ratios(self) -> list[float]:
        return [
            b.status.get(200, 0) / a.status.get(200, 0)
            for a, b in zip(self.base, self.variant, strict=True)
            if a.status.get(200)
        ]

    def broken(self) -> int:
        """5xx answers and broken connections, both sides."""
        return sum(
            r.transport_errors + sum(n for c, n in r.status.items() if c >= 500)
            for r in self.base + self.variant
        )


def run(
    pairs: list[Pair],
    model: BenchModel,
    body: Path,
    work: Path,
    say: Callable[[str], None],
    *,
    tag: str,
    concurrency: int,
    rounds: int,
    duration_s: float,
    warmup_s: float,
) -> list[PairRuns]:
    """Every available pair's interleaved runs at ``concurrency``."""
    chosen = [p for p in pairs if not p.base.unavailable()]
    servers = [(p.group, s) for p in chosen for s in (p.base, p.variant)]
    runs: dict[int, list[load.LoadResult]] = {id(s): [] for _, s in servers}
    cpu_us: dict[int, list[float | None]] = {id(s): [] for _, s in servers}
    with paired.all_up([(str(i), s) for i, (_, s) in enumerate(servers)], model, work, tag):
        say(f"{model.name}: {tag} runs at c={concurrency} over {len(servers)} servers ({rounds} rounds)")
        for i, (group, server) in paired.in_turn(servers, rounds):
            url = server.url(model)
            headers = wire.headers(wire.V2, b"") | server.auth_headers()
            load.run(url, body, concurrency, warmup_s, headers=headers)
            assert server.proc is not None
            tree = cpu.TreeCpu(server.proc.pid)
            tree.start()
            result = load.run(url, body, concurrency, duration_s, headers=headers)
            runs[id(server)].append(result)
            cpu_us[id(server)].append(cpu.per_request_us(tree.stop(), result.requests))
            ok, refused = result.status.get(200, 0), result.status.get(429, 0)
            say(
                f"{tag} {group} {server.note} round {i + 1}: {ok / duration_s:,.0f} answered/s, "
                f"{refused / duration_s:,.0f} refused/s, {result.errors - refused} other errors"
            )
    return [
        PairRuns(p, runs[id(p.base)], runs[id(p.variant)], cpu_us[id(p.base)], cpu_us[id(p.variant)])
        for p in chosen
    ]


def row(
    group: str,
    server: Server,
    results: list[load.LoadResult],
    duration_s: float,
    cpu_us: list[float | None] | None = None,
) -> dict[str, Any]:
    """One server's medians over its rounds."""
    measured = [x for x in cpu_us or [] if x is not None]

    def per_s(code: int) -> list[float]:
        return [r.status.get(code, 0) / duration_s for r in results]

    fives = sum(n for r in results for code, n in r.status.items() if code >= 500)
    p50s = [r.p50_ms for r in results if r.p50_ms is not None]
    p99s = [r.p99_ms for r in results if r.p99_ms is not None]
    return {
        "group": group,
        "queue": server.note,
        "note": server.note,
        "ok_per_s": statistics.median(per_s(200)),
        "ok_per_s_each": [round(x, 1) for x in per_s(200)],
        "refused_per_s": statistics.median(per_s(429)),
        "http_5xx": fives,
        "errors": sum(r.errors for r in results),
        "transport_errors": sum(r.transport_errors for r in results),
        "error_sample": next((r.error_sample for r in results if r.error_sample), ""),
        "p50_ms": statistics.median(p50s) if p50s else None,
        "p99_ms": statistics.median(p99s) if p99s else None,
        "server_cpu_us": statistics.median(measured) if measured else None,
    }


def rows(all_runs: list[PairRuns], duration_s: float) -> list[dict[str, Any]]:
    out = []
    for r in all_runs:
        sides = ((r.pair.base, r.base, r.base_cpu_us), (r.pair.variant, r.variant, r.variant_cpu_us))
        for server, results, cpu_us in sides:
            if results:
                out.append(row(r.pair.group, server, results, duration_s, cpu_us))
    return out


def measure(
    pairs: list[Pair],
    model: BenchModel,
    body: Path,
    work: Path,
    say: Callable[[str], None],
    *,
    tag: str,
    concurrency: int,
    bound: float,
    target: str,
    rounds: int,
    duration_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Rows (one per server) and verdicts (one per pair: the median ratio at least ``bound``, no 5xx and no
    broken connection), from interleaved runs."""
    runs = run(
        pairs,
        model,
        body,
        work,
        say,
        tag=tag,
        concurrency=concurrency,
        rounds=rounds,
        duration_s=duration_s,
        warmup_s=warmup_s,
    )
    verdicts = []
    for r in runs:
        if not r.base or not r.variant:
            continue
        ratios, cpu_ratios = r.ratios(), r.cpu_ratios()
        ratio = statistics.median(ratios) if ratios else None
        broken = r.broken()
        verdicts.append(
            {
                "group": r.pair.group,
                "target": target,
                "ratio": ratio,
                "ratios_each": [round(x, 3) for x in ratios],
                "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
                "cpu_ratios_each": [round(x, 3) for x in cpu_ratios],
                "broken": broken,
                "status": "met" if ratio is not None and ratio >= bound and broken == 0 else "missed",
            }
        )
    return {
        "concurrency": concurrency,
        "rounds": rounds,
        "duration_s": duration_s,
        "rows": rows(runs, duration_s),
        "verdicts": verdicts,
    }


VERDICT_COLUMNS = ["deployment", "target", "ratio", "per round", "status", "server CPU/req (not judged)"]


def verdict_cells(v: dict[str, Any]) -> list[str]:
    ratio = "-" if v["ratio"] is None else f"{v['ratio']:.3f}×"
    cpu_ratio = "-" if v.get("cpu_ratio") is None else f"{v['cpu_ratio']:.3f}×"
    each = ", ".join(f"{x:.3f}" for x in v["ratios_each"])
    return [v["group"], v["target"], ratio, each, v["status"], cpu_ratio]


def markdown(
    result: dict[str, Any],
    title: str,
    text: str,
    columns: list[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """The section: the rows, then the verdicts."""
    rows = [cells(r) for r in result["rows"]]
    verdicts = [verdict_cells(v) for v in result["verdicts"]]
    return tables.section(title, text, (columns, rows), (VERDICT_COLUMNS, verdicts))


def print_tables(
    result: dict[str, Any],
    title: str,
    text: str,
    columns: list[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> None:
    tables.show(title, columns, [cells(r) for r in result["rows"]], caption=text, right_from=2)
    verdicts = [verdict_cells(v) for v in result["verdicts"]]
    tables.show(f"{title.split(',')[0]}: the verdict", VERDICT_COLUMNS, verdicts)
