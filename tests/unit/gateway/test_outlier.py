"""Outlier detection: admitted once a probe passes, ejected after N consecutive faults, probed back in."""

from __future__ import annotations

import pytest

from conveyor.errors import DeadlineExceeded, InvalidInput, NotFound, Overloaded, Unavailable
from conveyor.gateway.outlier import OutlierState, is_replica_fault
from conveyor.gateway.upstream import ConnectionFailed


def test_a_new_replica_serves_only_after_its_first_passing_probe() -> None:
    s = OutlierState(3)
    assert not s.admitted
    assert not s.probe(False) and not s.admitted
    assert s.probe(True) and s.admitted


def test_ejected_after_n_consecutive_failures_and_back_when_a_probe_passes() -> None:
    s = OutlierState(3)
    s.probe(True)
    assert not s.failure() and not s.failure()
    assert s.failure() and not s.admitted
    assert not s.failure()  # already out: not ejected twice
    assert s.probe(True) and s.admitted and s.failures == 0


def test_a_success_resets_the_streak() -> None:
    s = OutlierState(2)
    s.probe(True)
    s.failure()
    s.success()
    assert not s.failure() and s.admitted


def test_failing_probes_eject_an_admitted_replica() -> None:
    s = OutlierState(2)
    s.probe(True)
    assert s.admitted  # else "not admitted" below would hold whatever the probes did
    s.probe(False)
    assert s.admitted  # one failure is under the threshold of 2
    s.probe(False)
    assert not s.admitted


def test_eject_takes_it_out_now() -> None:
    s = OutlierState(5)
    s.probe(True)
    s.eject()
    assert not s.admitted and s.probe(True)


def test_eject_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        OutlierState(0)


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (ConnectionFailed("x"), True),
        (Unavailable("x"), True),
        (DeadlineExceeded("x"), True),
        (InvalidInput("x"), False),
        (NotFound("x"), False),
        (Overloaded("x"), False),
        (RuntimeError("x"), False),
    ],
)
def test_only_replica_side_errors_count_as_faults(exc: Exception, fault: bool) -> None:
    assert is_replica_fault(exc) is fault
