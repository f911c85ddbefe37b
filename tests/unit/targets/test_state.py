"""run/replicas.json: records of every target in one file, written whole, read back as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.targets.base import ReplicaRecord
from conveyor.targets.state import ReplicaState


def record(rid: str, target: str = "local", details: dict[str, str] | None = None) -> ReplicaRecord:
    return ReplicaRecord(
        rid, "clf", 1, "abcdef0123", "m", "1", "unix:/x.sock", 42, "99", 1.5, target, details or {}
    )


def test_records_of_several_targets_are_saved_and_loaded_as_they_were(tmp_path: Path) -> None:
    state = ReplicaState(tmp_path / "run")
    assert state.load() == []  # no file yet
    ray = record("b", target="ray", details={"actor": "conveyor-b", "namespace": "conveyor"})
    state.save([record("a"), ray])
    assert state.load() == [record("a"), ray]
    assert state.path == tmp_path / "run" / "replicas.json"
    assert [p.name for p in state.path.parent.iterdir()] == ["replicas.json"]  # no temp file left


def test_a_record_written_before_targets_is_a_local_one(tmp_path: Path) -> None:
    state = ReplicaState(tmp_path)
    old = record("a").to_dict()
    del old["target"], old["details"]
    state.path.write_text(json.dumps({"replicas": [old]}))
    (loaded,) = state.load()
    assert loaded.target == "local" and loaded.details == {} and loaded.pid == 42


def test_an_unreadable_state_file_is_said_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = ReplicaState(tmp_path)
    state.path.write_text("{not json")
    assert state.load() == []
    assert "ignoring unreadable replica state" in caplog.text
