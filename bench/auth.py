"""Authentication on the inference path (issue 13): what checking a bearer token costs a `conveyor up`
gateway.

One Deployment of the model twice, both up at once, one replica each, the same spec but for ``public: true``
on one: hey's 32 workers send batch-1 V2 JSON, to the other with the admin token `conveyor up` wrote
(``Authorization: Bearer ...``), to the public one with none. Short runs go round the two in alternating
order, as in bench/paired.py; the ratio is the median of the per-round ratios of answered (200) requests per
second. The bound: with a token at least 97% of the public deployment's answers, and no error. Before the
runs, a request without a token must be refused 401 by the token deployment, or there is nothing to compare.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import auth_cost
import check
import cpu
import httpx
import load
import paired
import tables
import wire
from models import BenchModel
from servers import ConveyorUp

CONCURRENCY = 32
BOUND = 0.97


@dataclass
class Side:
    name: str
    server: ConveyorUp


def sides() -> list[Side]:
    """The token deployment first: it is the numerator of every ratio."""
    return [
        Side("token", ConveyorUp(replicas=1, note="admin token in every request")),
        Side("public", ConveyorUp(replicas=1, public=True, note="`public: true`, no token")),
    ]


def status_without_token(server: ConveyorUp, model: BenchModel, body: bytes) -> int | str:
    """What the gateway answers one request with no Authorization header: 401 for a non-public Deployment."""
    try:
        return httpx.post(server.url(model), content=body, headers=wire.headers(wire.V2, body)).status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"


@dataclass
class Runs:
    results: list[load.LoadResult]
    server_cpu_us: list[float | None]  # per round, as the results
    checks: check.CheckResult


def _row(side: Side, runs: Runs, duration_s: float) -> dict[str, Any]:
    ok = [r.status.get(200, 0) / duration_s for r in runs.results]
    p50s = [r.p50_ms for r in runs.results if r.p50_ms is not None]
    p99s = [r.p99_ms for r in runs.results if r.p99_ms is not None]
    return {
        "row": side.name,
        "note": side.server.note,
        "ok_per_s": statistics.median(ok),
        "ok_per_s_each": [round(x, 1) for x in ok],
        "p50_ms": statistics.median(p50s) if p50s else None,
        "p99_ms": statistics.median(p99s) if p99s else None,
        "server_cpu_us": _median([x for x in runs.server_cpu_us if x is not None]),
        "errors": sum(r.errors for r in runs.results) + runs.checks.errors,
        "wrong": runs.checks.wrong,
        "load_status": _summed_status(runs.results),
        "error_sample": next((r.error_sample for r in runs.results if r.error_sample), "")
        or runs.checks.first_problem,
    }


def _summed_status(results: list[load.LoadResult]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in results:
        for code, n in r.status.items():
            out[code] = out.get(code, 0) + n
    return out


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
    """The two rows and the verdict, from ``rounds`` interleaved runs at CONCURRENCY."""
    both = sides()
    if reason := both[0].server.unavailable():
        raise RuntimeError(reason)
    inprocess = auth_cost.measure()  # before the servers start: nothing of the bench's own competes
    runs = {s.name: Runs([], [], check.CheckResult()) for s in both}
    with paired.all_up([(s.name, s.server) for s in both], model, work, "auth"):
        unauthenticated = status_without_token(both[0].server, model, body.read_bytes())
        say(
            f"{model.name}: authentication runs at c={CONCURRENCY}, token vs public ({rounds} rounds); "
            f"without a token the token deployment answers {unauthenticated}"
        )
        for i, side in paired.in_turn(both, rounds):
            server = side.server
            assert server.proc is not None
            url, headers = server.url(model), wire.headers(wire.V2, b"") | server.auth_headers()
            load.run(url, body, CONCURRENCY, warmup_s, headers=headers)
            tree = cpu.TreeCpu(server.proc.pid)
            tree.start()
            result = load.run(url, body, CONCURRENCY, duration_s, headers=headers)
            server_us = cpu.per_request_us(tree.stop(), result.requests)
            runs[side.name].results.append(result)
            runs[side.name].server_cpu_us.append(server_us)
            say(
                f"auth {side.name} round {i + 1}: {result.status.get(200, 0) / duration_s:,.0f} answered/s, "
                f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, {result.errors} errors"
                + (f", server CPU {server_us:.0f} µs/req" if server_us is not None else "")
            )
        for side in both:
            url = side.server.url(model)
            runs[side.name].checks = check.check(url, wire.V2, model, auth=side.server.auth_headers())
    rows = [_row(s, runs[s.name], duration_s) for s in both]
    token, public = (runs[s.name] for s in both)
    verdict = judge(
        token.results, public.results, sum(r["errors"] + r["wrong"] for r in rows), unauthenticated
    )
    cpu_ratios = [
        a / b for a, b in zip(token.server_cpu_us, public.server_cpu_us, strict=True) if a is not None and b
    ]
    # not judged (the issue bounds throughput), but steadier on a shared machine: where the time goes
    verdict["cpu_ratio"] = _median(cpu_ratios)
    verdict["cpu_ratios_each"] = [round(r, 3) for r in cpu_ratios]
    return {
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "duration_s": duration_s,
        "rows": rows,
        "verdict": verdict,
        "inprocess": inprocess,
    }


def judge(
    token: list[load.LoadResult], public: list[load.LoadResult], errors: int, without_token: int | str
) -> dict[str, Any]:
    """Met when the median of the per-round ratios of 200s (token / public) is at least BOUND, nothing
    failed, and the token deployment refused a request without a token with 401."""
    ratios = [
        a.status.get(200, 0) / b.status.get(200, 0)
        for a, b in zip(token, public, strict=True)
        if b.status.get(200)
    ]
    ratio = _median(ratios)
    met = ratio is not None and ratio >= BOUND and errors == 0 and without_token == 401
    return {
        "target": f"answered/s with a token ≥ {BOUND:g}× public, c={CONCURRENCY}, no errors",
        "ratio": ratio,
        "ratios_each": [round(r, 3) for r in ratios],
        "errors": errors,
        "without_token": without_token,
        "status": "met" if met else "missed",
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


TITLE = "## Authentication cost"
TEXT = (
    "One `conveyor up` Deployment twice, 1 replica each, both up at once, the same spec but for "
    f"`public: true` on one; hey with {CONCURRENCY} workers, batch-1 V2 JSON, runs interleaved "
    "(bench/auth.py). The token row sends the admin token (`Authorization: Bearer`), the public row none. "
    "answered/s counts 200s; server CPU is the whole `conveyor up` tree's per request; the ratio is the "
    "median of the per-round ratios."
)
ROW_COLUMNS = ["row", "what", "answered/s", "p50 ms", "p99 ms", "server CPU µs/req", "errors", "wrong"]
VERDICT_COLUMNS = [
    "target",
    "without a token",
    "ratio",
    "per round",
    "status",
    "server CPU/req, token/public",
]


def row_cells(r: dict[str, Any]) -> list[str]:
    return [
        r["row"],
        r["note"],
        tables.num(r["ok_per_s"]),
        tables.num(r["p50_ms"], 1),
        tables.num(r["p99_ms"], 1),
        tables.num(r["server_cpu_us"]),
        str(r["errors"]),
        str(r["wrong"]),
    ]


def verdict_cells(v: dict[str, Any]) -> list[str]:
    ratio = "-" if v["ratio"] is None else f"{v['ratio']:.3f}×"
    each = ", ".join(f"{x:.3f}" for x in v["ratios_each"])
    cpu_ratio = "-" if v.get("cpu_ratio") is None else f"{v['cpu_ratio']:.3f}×"
    return [v["target"], str(v["without_token"]), ratio, each, v["status"], cpu_ratio]


def inprocess_line(result: dict[str, Any]) -> str:
    """The in-process cost of the token beside the token row's server CPU per request."""
    cost = result.get("inprocess")
    if not cost:
        return ""
    server_us = result["rows"][0]["server_cpu_us"]
    share = (
        f", {cost['total_us'] / server_us:.1%} of the token row's server CPU per request" if server_us else ""
    )
    return (
        f"In-process (bench/auth_cost.py), the token adds {cost['total_us']:.2f} µs to a gateway request: "
        f"{cost['header_us']:.2f} µs parsing its header line, {cost['authorize_us']:.2f} µs in "
        f"Gateway.authorize{share}."
    )


def markdown(result: dict[str, Any]) -> list[str]:
    rows = [row_cells(r) for r in result["rows"]]
    verdict = [verdict_cells(result["verdict"])]
    lines = tables.section(TITLE, TEXT, (ROW_COLUMNS, rows), (VERDICT_COLUMNS, verdict))
    return lines + ([inprocess_line(result), ""] if result.get("inprocess") else [])


def print_tables(result: dict[str, Any]) -> None:
    title = f"Authentication cost, c={CONCURRENCY} (interleaved, medians)"
    tables.show(title, ROW_COLUMNS, [row_cells(r) for r in result["rows"]], caption=TEXT, right_from=2)
    verdict = [verdict_cells(result["verdict"])]
    tables.show("Authentication cost: the verdict", VERDICT_COLUMNS, verdict, caption=inprocess_line(result))
