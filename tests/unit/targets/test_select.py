"""Targets: a control plane's targets by kind, the local one made at once, others at first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import errors
from conveyor.settings import Settings
from conveyor.targets.base import Target
from conveyor.targets.processes import LocalProcesses
from conveyor.targets.select import Targets, control_plane_targets


def local(tmp_path: Path) -> LocalProcesses:
    return LocalProcesses(tmp_path / "run", tmp_path / "s", lease=tmp_path / "lease", orphan_after_s=5)


def test_another_kind_is_made_at_first_use_and_only_once(tmp_path: Path) -> None:
    made: list[Target] = []

    def make() -> Target:
        target = local(tmp_path / "other")
        target.kind = "ray"  # stands in for a target of another kind: the registry only reads kind
        made.append(target)
        return target

    first = local(tmp_path)
    targets = Targets([first], {"ray": make})
    assert targets.get("local") is first and targets.made() == [first] and made == []
    ray = targets.get("ray")
    assert targets.get("ray") is ray and made == [ray] and targets.made() == [first, ray]


def test_a_kind_nobody_serves_is_refused_naming_the_kinds_there_are(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match=r"target 'ray' is not available here \(available: local\)"):
        Targets([local(tmp_path)]).get("ray")


def test_the_control_plane_has_its_local_processes_under_its_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", replica_orphan_timeout_s=7.0)
    (target,) = control_plane_targets(settings).made()
    assert isinstance(target, LocalProcesses) and target.kind == "local"
    assert target.lease == settings.home / "run" / "controlplane.lease" and target.orphan_after_s == 7.0
    assert not (settings.home / "run").exists()  # nothing written before a replica starts
