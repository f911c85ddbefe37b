"""The tune search and the winner's choice, as pure functions of measured rows (no server runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from conveyor.tune.search import (
    BASELINE,
    BATCH,
    CONFIRM,
    DELAY,
    GRID,
    QUEUE_DELAYS_US,
    Row,
    Setting,
    Trial,
    best,
    confirmed,
    mean_rps,
    next_trial,
    thread_replica_grid,
    winner,
)

DEFAULTS = Setting(threads=0, replicas=1, max_batch_size=32, max_queue_delay_us=500)
BOUND = 20.0

Machine = Callable[[Setting], tuple[float, float]]  # setting -> (req/s, p99 ms)


def _row(phase: str, s: Setting, rps: float, p99: float, errors: int = 0) -> Row:
    return Row(phase, s, rps=rps, p50_ms=p99 / 2, p99_ms=p99, requests=int(rps * 5), errors=errors)


def _drive(machine: Machine, cpus: int = 2, budget: int = 30) -> list[Row]:
    """Run the search to its end against a model of the machine, ``budget`` trials at most."""
    rows: list[Row] = []
    while (t := next_trial(rows, DEFAULTS, BOUND, cpus, budget - len(rows))) is not None:
        for s in (t.setting,) if t.against is None else (t.setting, t.against):
            rows.append(_row(t.phase, s, *machine(s)))
    return rows


def _batching_helps_up_to(best_batch: int) -> Machine:
    """Throughput grows with the batch size up to ``best_batch``; p99 breaks the bound above it. One
    thread per replica on one replica is best on this machine."""

    def machine(s: Setting) -> tuple[float, float]:
        one_by_one = (s.threads, s.replicas) == (1, 1)
        rps = 1000.0 + min(s.max_batch_size, best_batch) * 10 + (200 if one_by_one else 0)
        p99 = 10.0 if s.max_batch_size <= best_batch else 30.0
        return rps + (50 if s.max_queue_delay_us == 1000 else 0), p99

    return machine


def test_the_baseline_is_the_first_trial() -> None:
    assert next_trial([], DEFAULTS, BOUND, cpus=2, room=10) == Trial(BASELINE, DEFAULTS)


def test_threads_by_replicas_use_all_or_half_the_cores() -> None:
    two = [(s.threads, s.replicas) for s in thread_replica_grid(DEFAULTS, 2)]
    assert two == [(2, 1), (1, 1), (1, 2)]
    sixteen = {(s.threads, s.replicas) for s in thread_replica_grid(DEFAULTS, 16)}
    assert all(t * r in (8, 16) for t, r in sixteen) and len(sixteen) == 9
    assert {r for _, r in sixteen} == {1, 2, 4, 8, 16}
    # in-process placement runs one replica: only threads vary
    inprocess = thread_replica_grid(DEFAULTS, 4, max_replicas=1)
    assert [(s.threads, s.replicas) for s in inprocess] == [(4, 1), (2, 1)]
    # six cores count as four (a power of two) for the grid
    assert {t * r for t, r in ((s.threads, s.replicas) for s in thread_replica_grid(DEFAULTS, 6))} == {2, 4}


def test_the_search_doubles_the_batch_while_it_helps_then_tries_delays_then_confirms() -> None:
    rows = _drive(_batching_helps_up_to(128))
    trials = [(r.phase, r.setting) for r in rows]
    one = replace(DEFAULTS, threads=1)
    assert [p for p, _ in trials][:4] == [BASELINE, GRID, GRID, GRID]
    batch = [s.max_batch_size for p, s in trials if p == BATCH]
    assert batch == [64, 128, 256]  # 256 broke the bound: no further doubling, and no halving
    assert all((s.threads, s.replicas) == (1, 1) for p, s in trials if p == BATCH)
    delays = [s.max_queue_delay_us for p, s in trials if p == DELAY]
    assert delays == list(QUEUE_DELAYS_US)
    assert all(s.max_batch_size == 128 for p, s in trials if p == DELAY)
    won = replace(one, max_batch_size=128, max_queue_delay_us=1000)
    assert trials[-2:] == [(CONFIRM, DEFAULTS), (CONFIRM, won)]
    assert winner(rows, BOUND) == won


def test_when_doubling_does_not_help_the_batch_is_halved() -> None:
    def machine(s: Setting) -> tuple[float, float]:
        return 2000.0 - s.max_batch_size, 5.0  # smaller batches answer more here

    batch = [r.setting.max_batch_size for r in _drive(machine) if r.phase == BATCH]
    assert batch == [64, 16, 8, 4, 2, 1]


def test_a_baseline_over_the_bound_walks_towards_lower_p99() -> None:
    def machine(s: Setting) -> tuple[float, float]:
        return 1000.0, s.max_batch_size * 1.0  # p99 in ms == batch size; bound 20

    rows = _drive(machine)
    assert [r.setting.max_batch_size for r in rows if r.phase == BATCH] == [64, 16, 8]
    assert winner(rows, BOUND) is not None
    assert winner(rows, BOUND).max_batch_size <= 16  # type: ignore[union-attr]


def test_the_budget_keeps_room_for_the_confirm_round() -> None:
    rows = _drive(_batching_helps_up_to(128), budget=7)
    assert len(rows) == 7
    assert [r.phase for r in rows][-2:] == [CONFIRM, CONFIRM]
    assert rows[-1].setting == best([r for r in rows if r.phase != CONFIRM], BOUND)


def test_a_baseline_that_led_the_search_is_confirmed_against_the_runner_up() -> None:
    runner_up = replace(DEFAULTS, threads=1)

    def machine(s: Setting) -> tuple[float, float]:
        return 3000.0 if s == DEFAULTS else 1500.0 if s == runner_up else 1000.0, 5.0

    rows = _drive(machine)
    assert [(r.phase, r.setting) for r in rows][-2:] == [(CONFIRM, DEFAULTS), (CONFIRM, runner_up)]
    assert winner(rows, BOUND) == DEFAULTS


def test_no_confirm_round_when_nothing_else_meets_the_bound() -> None:
    def machine(s: Setting) -> tuple[float, float]:
        return 1000.0, 5.0 if s == DEFAULTS else BOUND * 2

    rows = _drive(machine)
    assert CONFIRM not in {r.phase for r in rows}
    assert winner(rows, BOUND) == DEFAULTS


def test_the_confirm_round_decides_against_a_lucky_search_row() -> None:
    lucky = replace(DEFAULTS, max_batch_size=64)
    rows = [
        _row(BASELINE, DEFAULTS, 1000, 10),
        _row(BATCH, lucky, 1500, 10),  # the highest of noisy samples
        _row(CONFIRM, DEFAULTS, 1100, 10),
        _row(CONFIRM, lucky, 1050, 10),
    ]
    assert winner(rows, BOUND) == DEFAULTS
    rows[-1] = _row(CONFIRM, lucky, 1130, 10)  # 3% more: within the noise, the baseline stays
    assert winner(rows, BOUND) == DEFAULTS
    rows[-1] = _row(CONFIRM, lucky, 1200, 10)
    assert winner(rows, BOUND) == lucky
    rows[-1] = _row(CONFIRM, lucky, 1200, BOUND + 1)  # faster, but over the bound this time
    assert winner(rows, BOUND) == DEFAULTS
    # the baseline's search row missed the bound by a hair; beside the other, it met it and was faster
    rows = [
        _row(BASELINE, DEFAULTS, 700, BOUND + 0.5),
        _row(BATCH, lucky, 1000, 10),
        _row(CONFIRM, DEFAULTS, 1300, 15),
        _row(CONFIRM, lucky, 800, 12),
    ]
    assert winner(rows, BOUND) == DEFAULTS
    # neither met the bound in the confirm round: the best setting whose every row met it
    rows[2:] = [_row(CONFIRM, DEFAULTS, 1300, BOUND + 1), _row(CONFIRM, lucky, 800, BOUND + 1)]
    assert winner(rows, BOUND) is None
    rows.append(_row(DELAY, replace(lucky, max_queue_delay_us=0), 900, 10))
    assert winner(rows, BOUND) == replace(lucky, max_queue_delay_us=0)


def test_no_winner_when_nothing_meets_the_bound() -> None:
    closer = replace(DEFAULTS, threads=1)
    rows = [_row(BASELINE, DEFAULTS, 1000, BOUND + 5), _row(GRID, closer, 900, BOUND + 1)]
    assert winner(rows, BOUND) is None
    assert best(rows, BOUND) == closer  # the closest to the bound leads the search


def test_errors_and_failed_trials_never_meet_the_bound() -> None:
    errors = _row(BASELINE, DEFAULTS, 5000, 1.0, errors=3)
    failed = Row(GRID, replace(DEFAULTS, replicas=2), failure="the server exited (1) before it was ready")
    fine = _row(GRID, replace(DEFAULTS, threads=1), 100, 1.0)
    assert not errors.meets(BOUND) and not failed.meets(BOUND)
    assert winner([errors, failed, fine], BOUND) == fine.setting
    assert winner([errors, failed], BOUND) is None


def test_a_budget_too_small_for_a_confirm_round_is_spent_on_the_search() -> None:
    rows = _drive(_batching_helps_up_to(128), budget=3)
    assert [r.phase for r in rows] == [BASELINE, GRID, GRID]
    assert winner(rows, BOUND) == replace(DEFAULTS, threads=1)  # on its one row


def test_throughput_is_compared_as_measured_beside_each_other_or_in_the_search() -> None:
    other = replace(DEFAULTS, replicas=2)
    rows = [
        _row(BASELINE, DEFAULTS, 1000, 10),
        _row(GRID, other, 1500, 10),
        _row(CONFIRM, DEFAULTS, 1100, 10),
        _row(CONFIRM, other, 1300, 10),
    ]
    assert confirmed(rows, other) and not confirmed(rows[:2], other)
    assert (mean_rps(rows, DEFAULTS, True), mean_rps(rows, DEFAULTS, False)) == (1100, 1000)
    assert mean_rps(rows, replace(other, threads=4), False) is None


def test_in_the_confirm_round_the_other_must_win_most_rounds_not_just_the_median() -> None:
    other = replace(DEFAULTS, max_queue_delay_us=1000)

    def confirm(s: Setting, runs: tuple[float, ...]) -> Row:
        return replace(_row(CONFIRM, s, sorted(runs)[len(runs) // 2], 10), runs_rps=runs)

    base_runs = (300.0, 280, 310, 290, 300, 280, 320, 290)
    # 11% faster by the median, but one burst of rounds: faster in only 4 of the 8 rounds
    lucky = (400.0, 390, 380, 330, 250, 260, 270, 280)
    rows = [_row(BASELINE, DEFAULTS, 300, 10), _row(DELAY, other, 330, 10)]
    assert winner([*rows, confirm(DEFAULTS, base_runs), confirm(other, lucky)], BOUND) == DEFAULTS
    steady = (*(r * 1.1 for r in base_runs[:7]), 250.0)  # faster in 7 of 8 rounds
    assert winner([*rows, confirm(DEFAULTS, base_runs), confirm(other, steady)], BOUND) == other
