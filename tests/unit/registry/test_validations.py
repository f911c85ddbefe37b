"""Validation verdicts in the registry (migration 0007): each run is stored with its gates, sets the version's
tag validated=true|false in the same transaction and is audited; the newest run is the verdict; backups
carry the runs, and archives written before the table existed still restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.registry import Registry
from conveyor.registry.backup import backup
from conveyor.registry.restore import restore
from tests.unit.registry.conftest import SIG
from tests.unit.registry.test_backup import assert_refused_as_malformed, older

GATES: list[dict[str, Any]] = [
    {"gate": "regression", "passed": True, "checks": [{"name": "accuracy", "value": 0.93}]},
    {"gate": "performance", "passed": False, "checks": [{"name": "p99_ms", "value": 80.0, "limit": 50.0}]},
]


def with_runs(reg: Registry) -> None:
    reg.register("clf", b"one", signature=SIG, framework="onnx", tags={"team": "a"})
    reg.register("clf", b"two", signature=SIG, framework="onnx")
    reg.validations.record("clf", 1, passed=False, gates=GATES, report="/r/clf-1.html")
    reg.validations.record("clf", 1, passed=True, gates=GATES[:1], baseline="clf:2")


def test_a_run_is_stored_and_sets_the_validated_tag_beside_the_others(registry: Registry) -> None:
    registry.register("clf", b"one", signature=SIG, framework="onnx", tags={"team": "a"})
    run = registry.validations.record("clf", 1, passed=False, gates=GATES, report="/r/clf-1.html")
    assert (run.ref, run.passed, run.gates, run.report, run.created_by) == (
        "clf:1",
        False,
        GATES,
        "/r/clf-1.html",
        "tester",
    )
    assert registry.get_version("clf", 1).tags == {"team": "a", "validated": "false"}
    registry.validations.record("clf", 1, passed=True, gates=GATES[:1])
    assert registry.get_version("clf", 1).tags == {"team": "a", "validated": "true"}
    latest = registry.validations.latest("clf", 1)
    assert latest is not None and latest.passed and latest.gates == GATES[:1]
    assert [r.passed for r in registry.validations.of_version("clf", 1)] == [False, True]
    entries = [e for e in registry.audit.list() if e.action == "version.validate"]
    assert [(e.object, e.details["passed"], e.details["failed"]) for e in entries] == [
        ("clf:1", False, ["performance"]),
        ("clf:1", True, []),
    ]


def test_a_version_never_validated_has_no_verdict_and_an_unknown_one_is_not_found(
    registry: Registry,
) -> None:
    registry.register("clf", b"one", signature=SIG, framework="onnx")
    assert registry.validations.latest("clf", 1) is None
    assert registry.validations.latest_of_model("clf") == {}
    with pytest.raises(errors.NotFound, match="version clf:9 not found"):
        registry.validations.record("clf", 9, passed=True, gates=[])


def test_the_latest_run_of_each_version(registry: Registry) -> None:
    with_runs(registry)
    registry.validations.record("clf", 2, passed=False, gates=GATES)
    latest = registry.validations.latest_of_model("clf")
    assert {v: r.passed for v, r in latest.items()} == {1: True, 2: False}


def test_deleting_a_version_deletes_its_runs(registry: Registry) -> None:
    with_runs(registry)
    registry.delete_version("clf", 1)
    assert registry.validations.latest_of_model("clf") == {}


def test_runs_are_backed_up_and_restored_in_order(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_runs(registry)
    made = backup(registry, tmp_path / "b.tar")
    assert made.validations == 2
    assert restore(fresh, tmp_path / "b.tar") == made
    runs = fresh.validations.of_version("clf", 1)
    assert [r.to_dict() for r in runs] == [r.to_dict() for r in registry.validations.of_version("clf", 1)]
    assert fresh.get_version("clf", 1).tags["validated"] == "true"


def test_a_backup_of_schema_0006_without_validations_still_restores(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_runs(registry)
    backup(registry, tmp_path / "b.tar")
    restored = restore(fresh, older(tmp_path, "0006", "validations"))
    assert (restored.validations, restored.versions) == (0, 2)
    assert fresh.validations.latest("clf", 1) is None


def _orphan(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
    rows["validations"][0]["version"] = 7


def _no_verdict(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
    rows["validations"][0]["passed"] = "yes"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_orphan, "a validation of a missing version clf:7"),
        (_no_verdict, "a validation of clf:1 has no verdict or gates"),
    ],
)
def test_invalid_validation_rows_are_refused(
    registry: Registry, fresh: Registry, tmp_path: Path, edit: Any, problem: str
) -> None:
    with_runs(registry)
    backup(registry, tmp_path / "b.tar")
    assert_refused_as_malformed(fresh, tmp_path, edit, problem)
