"""Placement: auto keeps one replica in-process and runs several as processes; impossible asks are refused."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput
from conveyor.targets.serve_stack import resolve_placement


def test_auto_is_inprocess_for_one_replica_and_processes_for_more() -> None:
    assert resolve_placement("auto", 1) == "inprocess"
    assert resolve_placement("auto", 2) == "process"
    assert resolve_placement("process", 1) == "process"


def test_inprocess_with_several_replicas_or_zero_replicas_is_refused() -> None:
    with pytest.raises(InvalidInput, match="inprocess"):
        resolve_placement("inprocess", 2)
    with pytest.raises(InvalidInput, match="at least 1"):
        resolve_placement("auto", 0)
