"""The data-plane targets (issue 11), each judged from two rows of the same run: a Conveyor row against the
strong lean reference of the same protocol (JSON with JSON, binary with binary), at the same concurrency.

Throughput targets are ``ours / lean >= bound``; latency targets ``ours / lean <= bound``. c=1 is judged on
hey's p50 and on the mean (Little's law) both, each its own line: neither stands in for the other.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import load

METRICS = {"rps": "req/s", "p50_ms": "p50 ms", "mean_ms": "mean ms"}
IN_PROCESS = "`conveyor serve` (in-process)"
UP = "`conveyor up`, 2 replicas"


@dataclass(frozen=True)
class Target:
    group: str
    model: str
    server: str  # the Conveyor row
    reference: str  # the lean row it is held against
    concurrency: int
    metric: str  # a key of METRICS
    bound: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "rps"

    @property
    def text(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        return (
            f"{self.model} c={self.concurrency} {METRICS[self.metric]}: {self.server} {sign} "
            f"{self.bound:g}× {self.reference}"
        )


def _in_process(model: str) -> list[Target]:
    return [
        Target(IN_PROCESS, model, "conveyor-gw-inproc", "lean", 32, "rps", 1.0),
        Target(IN_PROCESS, model, "conveyor-gw-inproc", "lean", 1, "p50_ms", 1.15),
        Target(IN_PROCESS, model, "conveyor-gw-inproc", "lean", 1, "mean_ms", 1.15),
    ]


TARGETS = [
    *_in_process("tiny"),
    *_in_process("mlp"),
    Target(IN_PROCESS, "cnn", "conveyor-gw-inproc", "lean", 32, "rps", 1.0),
    Target(IN_PROCESS, "cnn", "conveyor-gw-inproc-bin", "lean-binary", 32, "rps", 2.0),
    Target(UP, "tiny", "conveyor-up-r2", "lean", 32, "rps", 0.7),
    Target(UP, "tiny", "conveyor-up-r2", "lean", 1, "p50_ms", 2.0),
]


def _value(row: dict[str, Any], metric: str) -> float | None:
    value = load.mean_ms(row) if metric == "mean_ms" else row.get(metric)
    return float(value) if isinstance(value, int | float) else None


def _find(rows: list[dict[str, Any]], server: str, model: str, concurrency: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in rows
            if r.get("server") == server
            and r.get("model") == model
            and r.get("concurrency") == concurrency
            and r.get("status") == "ok"
        ),
        None,
    )


def judge(target: Target, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One target against the rows of one run: status 'met', 'missed' or 'not judged' (with the reason)."""
    out: dict[str, Any] = {
        "target": target.text,
        "group": target.group,
        "model": target.model,
        "server": target.server,
        "reference": target.reference,
        "concurrency": target.concurrency,
        "metric": target.metric,
        "bound": target.bound,
        "ours": None,
        "theirs": None,
        "ratio": None,
        "protocol": None,
        "status": "not judged",
        "reason": "",
    }
    ours = _find(rows, target.server, target.model, target.concurrency)
    theirs = _find(rows, target.reference, target.model, target.concurrency)
    missing = [name for name, row in ((target.server, ours), (target.reference, theirs)) if row is None]
    if ours is None or theirs is None:
        return {**out, "reason": f"not measured in this run: {', '.join(missing)}"}
    if ours.get("protocol") != theirs.get("protocol"):
        return {**out, "reason": f"protocols differ: {ours.get('protocol')} vs {theirs.get('protocol')}"}
    out["protocol"] = ours["protocol"]
    out["ours"], out["theirs"] = _value(ours, target.metric), _value(theirs, target.metric)
    faulty = [r["server"] for r in (ours, theirs) if r.get("errors") or r.get("wrong")]
    if faulty:
        return {**out, "reason": f"errors or wrong answers in {', '.join(faulty)}"}
    if not out["ours"] or not out["theirs"]:
        return {**out, "reason": f"no {METRICS[target.metric]} figure (0 or missing)"}
    ratio = out["ours"] / out["theirs"]
    pairs = _per_round(ours, theirs, target.metric)
    if pairs:  # interleaved rows: the median of the ratios of runs taken side by side
        ratio = statistics.median(pairs)
    met = ratio >= target.bound if target.higher_is_better else ratio <= target.bound
    return {**out, "ratio": ratio, "status": "met" if met else "missed"}


def _per_round(ours: dict[str, Any], theirs: dict[str, Any], metric: str) -> list[float]:
    a, b = ours.get(f"{metric}_each"), theirs.get(f"{metric}_each")
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
        return []
    return [x / y for x, y in zip(a, b, strict=True) if x and y]


def judge_all(rows: list[dict[str, Any]], targets: list[Target] | None = None) -> list[dict[str, Any]]:
    return [judge(t, rows) for t in (TARGETS if targets is None else targets)]


def _figure(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if metric == "rps" else f"{value:.3f}"


def cells(judged: dict[str, Any]) -> list[str]:
    metric = judged["metric"]
    ratio = judged["ratio"]
    status = judged["status"] + (f" ({judged['reason']})" if judged["reason"] else "")
    return [
        judged["group"],
        judged["target"],
        judged["protocol"] or "-",
        _figure(judged["ours"], metric),
        _figure(judged["theirs"], metric),
        "-" if ratio is None else f"{ratio:.2f}×",
        status,
    ]


TITLE = "## Targets, from this run"
TEXT = (
    "Each target holds a Conveyor row against the strong lean reference of the same protocol at the same "
    "concurrency, both from this run. c=1 is judged on hey's p50 (0.1 ms resolution) and on the mean "
    "(concurrency / req/s) both."
)
COLUMNS = ["placement", "target", "protocol", "Conveyor", "lean", "ratio", "status"]


INTERLEAVED_TITLE = "## Targets, interleaved"
INTERLEAVED_TEXT = (
    "The verdict. Every server a model's targets name is up at once and short runs (3 s after 1 s of "
    "warmup) go round them in turn, in alternating order; the ratio is the median of the per-round ratios "
    "and the figures the medians of the rounds, so a machine that slows down for a while slows both sides "
    "of a ratio (bench/paired.py). The sequential rows above run minutes apart."
)


def markdown_table(judged: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|---|---|---|---:|---:|---:|---|"
    body = ["| " + " | ".join(c.replace("|", "/") for c in cells(j)) + " |" for j in judged]
    return "\n".join([head, rule, *body])


def print_table(judged: list[dict[str, Any]], interleaved: int = 0) -> None:
    """The sequential table, or with ``interleaved`` (the rounds) the verdict from the interleaved runs."""
    from rich.console import Console
    from rich.table import Table

    if not judged:
        return
    title = "Targets (same protocol, same concurrency, same run)"
    if interleaved:
        title = f"Targets, interleaved ({interleaved} rounds, medians): the verdict"
    table = Table(title=title, caption=INTERLEAVED_TEXT if interleaved else TEXT)
    for i, title in enumerate(COLUMNS):
        table.add_column(title, justify="right" if 3 <= i <= 5 else "left")
    for j in judged:
        table.add_row(*cells(j))
    Console(width=240).print(table)
