"""What fits in tune's budget, and the options it refuses before a server starts."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput
from conveyor.tune.search import BASELINE, Row, Setting
from conveyor.tune.tuner import TuneOptions, _room

ROW = Row(BASELINE, Setting(0, 1, 32, 500), rps=100, p50_ms=1, p99_ms=2, requests=500, wall_s=10.0)


def test_the_trials_that_fit_come_from_what_the_trials_so_far_took() -> None:
    options = TuneOptions(p99_ms=10, budget_s=60, max_trials=20)
    assert _room([], 0.0, options) == 1  # the baseline always runs
    assert _room([ROW], 10.0, options) == 5  # 50 s left, 10 s a trial
    assert _room([ROW] * 3, 55.0, options) == 0
    assert _room([ROW] * 3, 30.0, TuneOptions(p99_ms=10, budget_s=600, max_trials=4)) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TuneOptions(p99_ms=0), "--p99-ms must be a number above 0"),
        (TuneOptions(p99_ms=float("nan")), "--p99-ms must be a number above 0"),
        (TuneOptions(p99_ms=5, concurrency=0), "--concurrency must be at least 1"),
        (TuneOptions(p99_ms=5, duration_s=0), "--duration and --budget must be above zero"),
        (TuneOptions(p99_ms=5, max_trials=0), "--max-trials must be at least 1"),
    ],
)
def test_bad_options_are_refused_naming_the_flag(options: TuneOptions, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        options.check()
