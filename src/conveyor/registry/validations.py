"""Validation verdicts of model versions (table ``validations``): each ``conveyor validate`` run, and the
version's ``validated`` tag set from it in the same transaction.

The gates themselves are validate/'s; this module only keeps what they concluded, next to the versions. The
newest run is the version's verdict: a later failed run takes back an earlier pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.registry import audit
from conveyor.registry.db import Database
from conveyor.registry.orm import Model, ModelVersion, ValidationRow, utcnow
from conveyor.registry.records import Record
from conveyor.registry.refs import check_name, check_version
from conveyor.registry.service import _check_json
from conveyor.registry.signatures import _version_id

VALIDATED_TAG = "validated"
"""Set to "true" or "false" by every run; control/rollouts.py gives a version tagged false no more than a
shadow's share of traffic."""


@dataclass(frozen=True)
class ValidationInfo(Record):
    """One stored run: which version, when, the verdict, each gate's result, the baseline and the report."""

    name: str
    version: int
    at: datetime
    passed: bool
    baseline: str | None
    gates: list[dict[str, Any]]
    report: str | None
    created_by: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class ValidationStore:
    """Validation runs over a migrated registry ``Database`` (``Registry.validations``)."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    def record(
        self,
        name: str,
        version: int,
        *,
        passed: bool,
        gates: list[dict[str, Any]],
        baseline: str | None = None,
        report: str | None = None,
    ) -> ValidationInfo:
        """Store a run of ``name:version`` and set its tag ``validated`` to the verdict, in one transaction
        (audited as ``version.validate``)."""
        check_name(name)
        check_version(version)
        gates = list(_check_json("gates", {"gates": gates})["gates"])
        by = self._user

        def txn(s: Session) -> ValidationInfo:
            row_id = _version_id(s, name, version)
            row = ValidationRow(
                model_version_id=row_id,
                at=utcnow(),
                passed=passed,
                baseline=baseline,
                gates=gates,
                report=report,
                created_by=by,
            )
            s.add(row)
            mv = s.get(ModelVersion, row_id)
            assert mv is not None  # found by _version_id in this transaction
            mv.tags = {**(mv.tags or {}), VALIDATED_TAG: "true" if passed else "false"}
            s.flush()
            failed = [g.get("gate") for g in gates if not g.get("passed")]
            details = {"passed": passed, "failed": failed, "baseline": baseline}
            audit.append(s, actor=by, action="version.validate", object=f"{name}:{version}", details=details)
            return _info(name, version, row)

        return self._db.transaction(txn, write=True)

    def of_version(self, name: str, version: int) -> list[ValidationInfo]:
        """Every run of the version, oldest first (NotFound if the version is not registered)."""
        check_name(name)
        check_version(version)

        def txn(s: Session) -> list[ValidationInfo]:
            row_id = _version_id(s, name, version)
            stmt = select(ValidationRow).where(ValidationRow.model_version_id == row_id)
            rows = s.scalars(stmt.order_by(ValidationRow.id))
            return [_info(name, version, r) for r in rows]

        return self._db.transaction(txn)

    def latest(self, name: str, version: int) -> ValidationInfo | None:
        """The version's verdict: its newest run, or None when it was never validated."""
        runs = self.of_version(name, version)
        return runs[-1] if runs else None

    def latest_of_model(self, name: str) -> dict[int, ValidationInfo]:
        """The newest run of each of the model's versions that has one, by version number."""
        check_name(name)

        def txn(s: Session) -> dict[int, ValidationInfo]:
            stmt = (
                select(ModelVersion.version, ValidationRow)
                .join(ValidationRow, ValidationRow.model_version_id == ModelVersion.id)
                .join(Model, Model.id == ModelVersion.model_id)
                .where(Model.name == name)
                .order_by(ValidationRow.id)
            )
            return {v: _info(name, v, row) for v, row in s.execute(stmt).tuples()}

        return self._db.transaction(txn)


def _info(name: str, version: int, row: ValidationRow) -> ValidationInfo:
    return ValidationInfo(
        name=name,
        version=version,
        at=row.at,
        passed=row.passed,
        baseline=row.baseline,
        gates=list(row.gates or []),
        report=row.report,
        created_by=row.created_by,
    )
