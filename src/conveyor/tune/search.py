"""What ``conveyor tune`` tries next and which setting wins: pure functions of the rows measured so far.

The search is a coordinate search, not a grid: the baseline first; then threads per replica x replicas
(bounded by the cores); then the batch size, doubled while that helps, else halved while that helps; then
the queue delay among a few values; then a confirm round that measures the baseline and the best other
setting again, both served at once and loaded in turn, so the winner is judged against the baseline on the
same stretch of the machine's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from conveyor.spec.units import MAX_BATCH_SIZE

BASELINE, GRID, BATCH, DELAY, CONFIRM = "baseline", "threads×replicas", "batch", "queue delay", "confirm"
PHASES = (BASELINE, GRID, BATCH, DELAY, CONFIRM)
QUEUE_DELAYS_US = (0, 250, 1000, 2000)
"""Queue delays tried beside the best setting's own (the default is 500 µs: docs/batching.md)."""
CONFIRM_TRIALS = 2
MIN_GAIN = 0.05
"""How much more throughput than the baseline's a setting must show in the confirm round to replace it."""
MIN_ROUNDS_WON = 7 / 8
"""...and in what share of its rounds it must have been the faster: a sign test (7 of 8 rounds happen by
chance 4% of the time when the two are the same)."""


@dataclass(frozen=True, order=True)
class Setting:
    """One serving configuration: ONNX Runtime threads per replica (0: it chooses), replicas, batching."""

    threads: int
    replicas: int
    max_batch_size: int
    max_queue_delay_us: int

    def label(self) -> str:
        threads = "auto" if self.threads == 0 else str(self.threads)
        return (
            f"threads {threads} × replicas {self.replicas}, batch {self.max_batch_size}, "
            f"delay {self.max_queue_delay_us} µs"
        )


@dataclass(frozen=True)
class Trial:
    phase: str
    setting: Setting
    against: Setting | None = None  # the confirm round: both measured at once, in turn


@dataclass(frozen=True)
class Row:
    """One trial measured: its throughput and latency under load, or why it could not be measured."""

    phase: str
    setting: Setting
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: int = 0
    failure: str | None = None  # the server did not start, or the load could not run
    wall_s: float = 0.0
    client_cpu_us: float | None = None  # the load generator's own CPU per request
    runs_rps: tuple[float, ...] = ()  # the confirm round: req/s of each of its runs, in round order

    def meets(self, p99_bound_ms: float) -> bool:
        """Answered every request, and its p99 is within the bound."""
        return (
            self.failure is None
            and self.errors == 0
            and self.requests > 0
            and self.p99_ms is not None
            and self.p99_ms <= p99_bound_ms
        )

    def to_dict(self, p99_bound_ms: float) -> dict[str, Any]:
        out = asdict(self)
        out["setting"] = asdict(self.setting)
        return {**out, "meets_bound": self.meets(p99_bound_ms)}


@dataclass(frozen=True)
class Summary:
    """A setting over all its rows: mean throughput, worst p99, and whether every row met the bound."""

    setting: Setting
    rps: float
    p99_ms: float
    meets: bool

    def key(self) -> tuple[bool, float]:
        """Higher is better: meeting the bound first, then throughput; among those that miss, lower p99."""
        return (self.meets, self.rps if self.meets else -self.p99_ms)


def summarize(rows: Sequence[Row], p99_bound_ms: float) -> dict[Setting, Summary]:
    by: dict[Setting, list[Row]] = {}
    for r in rows:
        by.setdefault(r.setting, []).append(r)
    out = {}
    for setting, group in by.items():
        p99s = [r.p99_ms if r.p99_ms is not None and r.failure is None else float("inf") for r in group]
        out[setting] = Summary(
            setting,
            rps=sum(r.rps for r in group) / len(group),
            p99_ms=max(p99s),
            meets=all(r.meets(p99_bound_ms) for r in group),
        )
    return out


def best(rows: Sequence[Row], p99_bound_ms: float) -> Setting | None:
    """The highest-throughput setting whose every row met the bound; else the one closest to the bound
    (lowest p99); None without rows."""
    summaries = summarize(rows, p99_bound_ms)
    if not summaries:
        return None
    return max(summaries.values(), key=lambda s: (*s.key(), _tie(s.setting))).setting


def winner(rows: Sequence[Row], p99_bound_ms: float) -> Setting | None:
    """The setting to deploy, or None when no setting met the bound.

    After a confirm round (its first row is the baseline's): the other setting when it met the bound there,
    answered more than ``MIN_GAIN`` more requests per second than the baseline and was the faster in
    ``MIN_ROUNDS_WON`` of the rounds, else the baseline when it met the bound there. Both were measured in
    turn on the same stretch of time; a search row is one noisy sample, and a miss there by a hair does not
    disqualify what met the bound beside the other. A tie within the noise keeps the baseline: no change is
    the safe one. When neither met the bound there, and
    without a confirm round, the best setting whose every row met the bound."""
    confirmed = [r for r in rows if r.phase == CONFIRM]
    fair = summarize(confirmed, p99_bound_ms)
    if any(s.meets for s in fair.values()):
        base = fair[confirmed[0].setting]
        other = next((s for s in fair.values() if s.setting != base.setting), None)
        if other is not None and other.meets and (not base.meets or _beats(confirmed, other, base)):
            return other.setting
        return base.setting if base.meets else None
    chosen = best(rows, p99_bound_ms)
    if chosen is None or not summarize(rows, p99_bound_ms)[chosen].meets:
        return None
    return chosen


def _beats(confirmed: Sequence[Row], other: Summary, base: Summary) -> bool:
    """More than ``MIN_GAIN`` faster beside the baseline, and the faster in ``MIN_ROUNDS_WON`` of the
    rounds (each round's two runs were seconds apart) when the runs are known."""
    if other.rps <= base.rps * (1 + MIN_GAIN):
        return False
    mine = next(r.runs_rps for r in confirmed if r.setting == other.setting)
    theirs = next(r.runs_rps for r in confirmed if r.setting == base.setting)
    if not mine or len(mine) != len(theirs):
        return True
    won = sum(a > b for a, b in zip(mine, theirs, strict=True))
    return won >= MIN_ROUNDS_WON * len(mine)


def confirmed(rows: Sequence[Row], setting: Setting) -> bool:
    """Whether the setting was measured in the confirm round."""
    return any(r.phase == CONFIRM and r.setting == setting for r in rows)


def mean_rps(rows: Sequence[Row], setting: Setting, confirm: bool) -> float | None:
    """The setting's mean throughput over its confirm rows (``confirm``) or its search rows."""
    mine = [r.rps for r in rows if r.setting == setting and (r.phase == CONFIRM) == confirm]
    return sum(mine) / len(mine) if mine else None


def _tie(setting: Setting) -> tuple[int, int, int]:
    # Equal numbers (two failed trials, say): the cheaper setting, fewer processes and threads.
    return (-setting.replicas, -setting.threads, -setting.max_batch_size)


def thread_replica_grid(base: Setting, cpus: int, max_replicas: int | None = None) -> list[Setting]:
    """Threads per replica x replicas with threads x replicas using all the cores (rounded down to a power
    of two) or half of them: fewer leave cores idle, more make replicas fight over them. The base's own
    combination is left out (it is measured already); ``max_replicas`` 1 for in-process placement."""
    top = 1
    while top * 2 <= max(1, cpus):
        top *= 2
    powers = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= top]
    wanted = {top, max(1, top // 2)}
    out = [
        replace(base, threads=t, replicas=r)
        for r in powers
        for t in sorted(powers, reverse=True)
        if t * r in wanted and (max_replicas is None or r <= max_replicas)
    ]
    return [s for s in out if s != base]


def next_trial(
    rows: Sequence[Row],
    baseline: Setting,
    p99_bound_ms: float,
    cpus: int,
    room: int,
    max_replicas: int | None = None,
) -> Trial | None:
    """The next trial to run given the rows so far, or None when done. ``room`` is how many more trials
    fit in the budget; the search keeps the confirm round's trials out of it."""
    if room <= 0:
        return None
    if not any(r.setting == baseline for r in rows):
        return Trial(BASELINE, baseline)
    confirm = _next_confirm(rows, baseline, p99_bound_ms)
    if any(r.phase == CONFIRM for r in rows):
        return confirm  # the search is over once the confirm round started
    search = _next_search(rows, baseline, p99_bound_ms, cpus, max_replicas)
    if search is not None and room > CONFIRM_TRIALS:
        return search
    # The last trials: the confirm round when the best is not the baseline and it fits; else more search
    # (a winner found now is judged on its one row).
    if confirm is not None and room >= CONFIRM_TRIALS:
        return confirm
    return search


def _next_confirm(rows: Sequence[Row], baseline: Setting, p99_bound_ms: float) -> Trial | None:
    """The baseline against the best other setting that met the bound (one trial of both, two server
    starts); None when no other setting met it or the round ran. The baseline's own search row is one
    noisy sample too: when it led the search, the runner-up gets its chance beside it."""
    searched = [r for r in rows if r.phase != CONFIRM]
    others = [s for s in summarize(searched, p99_bound_ms).values() if s.setting != baseline and s.meets]
    if not others:
        return None
    candidate = max(others, key=lambda s: (s.rps, _tie(s.setting))).setting
    if any(r.phase == CONFIRM for r in rows):
        return None
    return Trial(CONFIRM, baseline, against=candidate)


def _next_search(
    rows: Sequence[Row], baseline: Setting, p99_bound_ms: float, cpus: int, max_replicas: int | None
) -> Trial | None:
    """Each stage starts from the best of the rows of the stages before it, so the walk is the same
    whenever it is recomputed from the same rows."""
    measured = summarize(rows, p99_bound_ms)
    for s in thread_replica_grid(baseline, cpus, max_replicas):
        if s not in measured:
            return Trial(GRID, s)
    start = _best_of(rows, (BASELINE, GRID), p99_bound_ms)
    for factor in (2.0, 0.5):
        walk = start
        while True:
            size = int(walk.max_batch_size * factor)
            if size < 1 or size > MAX_BATCH_SIZE or size == walk.max_batch_size:
                break
            s = replace(walk, max_batch_size=size)
            if s not in measured:
                return Trial(BATCH, s)
            if measured[s].key() <= measured[walk].key():
                break
            walk = s
        if walk != start:  # doubling helped: halving is not worth a trial
            break
    start = _best_of(rows, (BASELINE, GRID, BATCH), p99_bound_ms)
    for delay in QUEUE_DELAYS_US:
        s = replace(start, max_queue_delay_us=delay)
        if s not in measured:
            return Trial(DELAY, s)
    return None


def _best_of(rows: Sequence[Row], phases: tuple[str, ...], p99_bound_ms: float) -> Setting:
    chosen = best([r for r in rows if r.phase in phases], p99_bound_ms)
    assert chosen is not None  # the baseline row is always there
    return chosen
