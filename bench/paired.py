"""The targets judged a second way: the rows of each target up at once, measured in alternation.

The sequential rows of ``make bench`` run one server after another over about twenty minutes; on a shared
2-core machine the speed drifts by tens of percent between rows minutes apart (hey's own CPU per request, the
same work every time, moved from 133 to 241 µs between two rows of one run). Here every server a model's
targets name is started, then short runs go round them in turn, ``rounds`` times, in alternating order
(ABC, CBA, ...). A target's ratio is the median of its per-round ratios, each from runs seconds apart; the
figures shown are the medians of the rounds. Drift lands on both sides of every ratio.
``bench/gateway/measure.py`` measured the gateway designs the same way.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import check
import config
import load
import targets
import wire
from models import BenchModel
from servers import Server

T = TypeVar("T")


@contextlib.contextmanager
def all_up(servers: Sequence[tuple[str, Server]], model: BenchModel, work: Path, tag: str) -> Iterator[None]:
    """Start every (name, server) for ``model`` and wait until each answers; stop them all on leaving."""
    started: list[Server] = []
    try:
        for name, server in servers:
            workdir = work / tag / f"{name}-{model.name}"
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            server.start(model, workdir, work / "logs" / f"{tag}-{name}-{model.name}.log")
            started.append(server)
            server.ready(model)
        yield
    finally:
        for server in started:
            server.stop()


def in_turn(items: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, item), going round ``items`` ``rounds`` times in alternating order (ABC, CBA, ...): a steady
    drift of the machine lands on every item alike."""
    for i in range(rounds):
        for item in items if i % 2 == 0 else reversed(items):
            yield i, item


def needed(model: str, rows: list[config.Row]) -> dict[str, set[int]]:
    """Row name → concurrencies that the targets of ``model`` judge, for the rows selected in this run."""
    selected = {r.name for r in rows}
    out: dict[str, set[int]] = {}
    for t in targets.TARGETS:
        if t.model == model and t.server in selected and t.reference in selected:
            out.setdefault(t.server, set()).add(t.concurrency)
            out.setdefault(t.reference, set()).add(t.concurrency)
    return out


def measure(
    model: BenchModel,
    rows: list[config.Row],
    bodies: dict[str, Path],
    work: Path,
    say: Callable[[str], None],
    *,
    rounds: int = 4,
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
) -> list[dict[str, Any]]:
    """One row per (server, concurrency) the targets need: median req/s, p50 and mean over ``rounds``."""
    wanted = needed(model.name, rows)
    group = [r for r in rows if r.name in wanted and not r.server.unavailable()]
    if not group:
        return []
    runs: dict[tuple[str, int], list[load.LoadResult]] = {}
    errors: dict[tuple[str, int], int] = {}
    wrong: dict[str, int] = {}
    with all_up([(r.name, r.server) for r in group], model, work, "paired"):
        say(
            f"{model.name}: interleaved target runs over {', '.join(r.name for r in group)} ({rounds} rounds)"
        )
        for i, row in in_turn(group, rounds):
            body = bodies[row.server.wire_format]
            url = row.server.url(model)
            headers = wire.headers(row.server.wire_format, body.read_bytes()) | row.server.auth_headers()
            for c in sorted(wanted[row.name]):
                load.run(url, body, c, warmup_s, headers=headers)
                result = load.run(url, body, c, duration_s, headers=headers)
                runs.setdefault((row.name, c), []).append(result)
                errors[(row.name, c)] = errors.get((row.name, c), 0) + result.errors
                say(
                    f"{model.name} × {row.name} c={c} round {i + 1}: {result.rps:,.0f} req/s, "
                    f"p50 {result.p50_ms} ms, {result.errors} errors"
                )
        for row in group:
            verdict = check.check(
                row.server.url(model), row.server.wire_format, model, auth=row.server.auth_headers()
            )
            wrong[row.name] = verdict.wrong
            for c in wanted[row.name]:
                errors[(row.name, c)] += verdict.errors
    out = []
    for (name, c), results in sorted(runs.items()):
        row = next(r for r in group if r.name == name)
        p50s = [r.p50_ms for r in results if r.p50_ms is not None]
        out.append(
            {
                "model": model.name,
                "server": name,
                "protocol": row.protocol,
                "concurrency": c,
                "status": "ok",
                "rounds": len(results),
                "rps": statistics.median(r.rps for r in results),
                "rps_each": [round(r.rps, 1) for r in results],
                "p50_ms_each": [r.p50_ms for r in results],
                "mean_ms_each": [c / r.rps * 1000 if r.rps else None for r in results],
                "p50_ms": statistics.median(p50s) if p50s else None,
                "errors": errors[(name, c)],
                "wrong": wrong.get(name, 0),
            }
        )
    return out
