"""The validations table in a backup (migration 0007): each run keyed by its version (model, number), in the
order written, so the newest is still the verdict after a restore. Absent from archives of schema 0006 or
older (restored as none; the versions' ``validated`` tags, kept with the versions, say what they said)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.archive import iso, parse_time
from conveyor.registry.orm import ValidationRow

_FIELDS = ("passed", "baseline", "gates", "report", "created_by")


def dump_validation_rows(s: Session, refs: dict[int, tuple[str, int]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by version then id: the same registry gives the same JSON."""
    runs = sorted(s.scalars(select(ValidationRow)), key=lambda r: (refs[r.model_version_id], r.id))
    return {
        "validations": [
            {
                "model": refs[r.model_version_id][0],
                "version": refs[r.model_version_id][1],
                "at": iso(r.at),
                **{k: getattr(r, k) for k in _FIELDS},
            }
            for r in runs
        ]
    }


def check_validation_rows(rows: dict[str, Any], versions: set[tuple[str, int]]) -> None:
    """InvalidInput unless each run belongs to a version of the archive and has a verdict and gates."""
    for r in rows.get("validations", []):
        if (r["model"], r["version"]) not in versions:
            raise errors.InvalidInput(f"a validation of a missing version {r['model']}:{r['version']}")
        if not isinstance(r["passed"], bool) or not isinstance(r["gates"], list):
            raise errors.InvalidInput(f"a validation of {r['model']}:{r['version']} has no verdict or gates")


def insert_validation_rows(s: Session, rows: dict[str, Any], version_ids: dict[tuple[str, int], int]) -> None:
    s.add_all(
        ValidationRow(
            model_version_id=version_ids[(r["model"], r["version"])],
            at=parse_time(r["at"]),
            **{k: r[k] for k in _FIELDS},
        )
        for r in rows.get("validations", [])
    )
    s.flush()
