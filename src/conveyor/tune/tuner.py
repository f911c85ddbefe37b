"""``conveyor tune``: run trials of the real serving stack as the search says, within a time budget, and
say which setting serves the most under the latency bound."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from conveyor.errors import InvalidInput
from conveyor.formats.signature import Signature
from conveyor.loadgen import Load
from conveyor.optimize.data import Inputs, draw_from_reference, load_inputs, row_count
from conveyor.protocol.codec import encode_infer_request
from conveyor.protocol.datatypes import numpy_dtype
from conveyor.registry import Registry, VersionInfo
from conveyor.tune.search import (
    CONFIRM_TRIALS,
    Row,
    Setting,
    Trial,
    confirmed,
    mean_rps,
    next_trial,
    winner,
)
from conveyor.tune.trial import run_trial

BODIES = 64
"""Distinct request bodies sent in turn (one row each)."""
_STARTUP_GUESS_S = 10.0  # a server's start and stop, before the first trial measured it


class Progress(Protocol):
    """Told when a trial starts and when its row is measured, so a CLI can draw a bar."""

    def start(self, budget_s: float) -> None: ...

    def trial(self, number: int, trial: Trial, elapsed_s: float) -> None: ...

    def measured(self, row: Row, elapsed_s: float) -> None: ...


class _Silent:
    def start(self, budget_s: float) -> None:
        pass

    def trial(self, number: int, trial: Trial, elapsed_s: float) -> None:
        pass

    def measured(self, row: Row, elapsed_s: float) -> None:
        pass


Runner = Callable[[str, Trial, Load, str], list[Row]]


@dataclass(frozen=True)
class TuneOptions:
    p99_ms: float
    concurrency: int = 32
    duration_s: float = 5.0
    warmup_s: float = 1.0
    budget_s: float = 300.0
    max_trials: int = 20
    data: Path | None = None
    placement: str = "auto"
    cpus: int | None = None  # default: the cores this process may run on

    def check(self) -> None:
        if not self.p99_ms > 0 or math.isinf(self.p99_ms):
            raise InvalidInput(f"--p99-ms must be a number above 0, not {self.p99_ms}")
        if self.concurrency < 1:
            raise InvalidInput(f"--concurrency must be at least 1, not {self.concurrency}")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.budget_s <= 0:
            raise InvalidInput("--duration and --budget must be above zero, --warmup zero or more")
        if self.max_trials < 1:
            raise InvalidInput(f"--max-trials must be at least 1, not {self.max_trials}")

    def usable_cpus(self) -> int:
        if self.cpus is not None:
            return self.cpus
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


@dataclass
class TuneResult:
    version: VersionInfo
    options: TuneOptions
    baseline: Setting
    rows: list[Row]
    data: str  # where the request rows came from
    winner: Setting | None = None
    stopped: str = ""  # why the search ended
    notes: list[str] = field(default_factory=list)

    @property
    def refusal(self) -> str | None:
        if self.winner is not None:
            return None
        return (
            f"no setting met p99 <= {self.options.p99_ms:g} ms with every request answered at "
            f"concurrency {self.options.concurrency}: raise --p99-ms or lower --concurrency"
        )

    @property
    def confirmed(self) -> bool:
        """The winner was measured beside the baseline in the confirm round (else: on its search rows)."""
        return self.winner is not None and confirmed(self.rows, self.winner)

    @property
    def winner_rps(self) -> float | None:
        return None if self.winner is None else mean_rps(self.rows, self.winner, self.confirmed)

    @property
    def baseline_rps(self) -> float | None:
        """Measured as the winner was: beside it in the confirm round, else in the search."""
        return mean_rps(self.rows, self.baseline, self.confirmed)

    @property
    def gain(self) -> float | None:
        won, base = self.winner_rps, self.baseline_rps
        return won / base if won and base else None

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "ref": self.version.ref,
            "p99_ms": o.p99_ms,
            "concurrency": o.concurrency,
            "duration_s": o.duration_s,
            "warmup_s": o.warmup_s,
            "placement": o.placement,
            "data": self.data,
            "baseline": asdict(self.baseline),
            "winner": asdict(self.winner) if self.winner else None,
            "baseline_rps": self.baseline_rps,
            "winner_rps": self.winner_rps,
            "gain": self.gain,
            "confirmed": self.confirmed,
            "rows": [r.to_dict(o.p99_ms) for r in self.rows],
            "stopped": self.stopped,
            "refused": self.refusal,
        }


def tune(
    registry: Registry,
    ref: str,
    options: TuneOptions,
    baseline: Setting,
    progress: Progress | None = None,
    run: Runner = run_trial,
) -> TuneResult:
    """Search for the setting of ``ref`` with the most throughput at ``options.concurrency`` whose p99
    stays within the bound; every trial is a row of the result (the confirm trial two). ``run`` measures
    one trial (the real serving stack; tests give their own)."""
    options.check()
    progress = progress or _Silent()
    version = registry.resolve(ref)
    signature = Signature.from_dict(version.signature)
    inputs, where = _inputs(version, signature, options.data)
    load = Load(
        bodies=_bodies(inputs),
        concurrency=options.concurrency,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
    )
    cpus = options.usable_cpus()
    max_replicas = 1 if options.placement == "inprocess" else None
    rows: list[Row] = []
    started = time.monotonic()
    progress.start(options.budget_s)
    result = TuneResult(version, options, baseline, rows, where)
    while True:
        elapsed = time.monotonic() - started
        room = _room(rows, elapsed, options)
        trial = next_trial(rows, baseline, options.p99_ms, cpus, room, max_replicas)
        if trial is None:
            unbounded = next_trial(rows, baseline, options.p99_ms, cpus, options.max_trials, max_replicas)
            result.stopped = "the search is done" if unbounded is None else _why_stopped(rows, options)
            break
        progress.trial(len(rows) + 1, trial, elapsed)
        for row in run(version.ref, trial, load, options.placement):
            rows.append(row)
            progress.measured(row, time.monotonic() - started)
    result.winner = winner(rows, options.p99_ms)
    return result


def _room(rows: list[Row], elapsed_s: float, options: TuneOptions) -> int:
    """How many more trials fit: the budget left over what a trial took so far (a guess before the first);
    the first always runs."""
    if not rows:
        return 1
    per_trial = sum(r.wall_s for r in rows) / len(rows)
    fit = int((options.budget_s - elapsed_s) // max(per_trial, 0.001))
    return max(0, min(options.max_trials - len(rows), fit))


def _why_stopped(rows: list[Row], options: TuneOptions) -> str:
    if len(rows) + CONFIRM_TRIALS > options.max_trials:
        return f"--max-trials {options.max_trials} left no room for the next trials"
    return f"the --budget of {options.budget_s:g} s left no room for the next trials"


def _inputs(version: VersionInfo, signature: Signature, data: Path | None) -> tuple[Inputs, str]:
    """The rows requests carry: ``--data``, else drawn from the version's reference statistics, else
    random normal rows of the signature's shapes (timing a dense model does not depend on the values)."""
    if data is not None:
        given = load_inputs(data, signature, "data")
        return given, f"{min(BODIES, row_count(given))} rows of {data}"
    reference = version.metadata.get("reference")
    drawn = draw_from_reference(reference if isinstance(reference, dict) else None, signature, rows=BODIES)
    if not isinstance(drawn, str):
        return drawn, f"{BODIES} rows drawn from the reference statistics of {version.ref}"
    rng = np.random.default_rng(0)
    out: Inputs = {}
    for spec in signature.inputs:
        if spec.datatype == "BYTES" or any(d < 0 for d in spec.shape[1:]):
            raise InvalidInput(f"no rows to send to {version.ref}: {drawn}; give --data")
        shape = (BODIES, *spec.shape[1:])
        out[spec.name] = rng.standard_normal(shape).astype(numpy_dtype(spec.datatype))
    why = drawn.removeprefix("the version has ")
    return out, f"{BODIES} random normal rows ({why}; --data for real rows)"


def _bodies(inputs: Inputs) -> list[bytes]:
    """One V2 JSON request body per row (at most ``BODIES``), as a client sends one prediction."""
    rows = min(BODIES, row_count(inputs))
    return [encode_infer_request({k: v[i : i + 1] for k, v in inputs.items()})[0] for i in range(rows)]
