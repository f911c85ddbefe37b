"""Alerts in the registry database (``Registry.alerts``): the applied ``kind: AlertRule`` resources, and
the state of every alert, saved by the control plane after each evaluation that changed it (so ``conveyor
alerts`` shows firing and recently resolved ones, and a restarted control plane goes on from them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.observe.alert_state import Alert, Key
from conveyor.registry.audit import append
from conveyor.registry.db import Database
from conveyor.registry.orm import AlertRow, AlertRuleRow, utcnow


class AlertStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    # -- AlertRule resources ------------------------------------------------------------------------------

    def apply_rules(
        self, items: Iterable[tuple[dict[str, Any], str]], *, by: str | None
    ) -> list[dict[str, Any]]:
        """Store each (canonical AlertRule document, fingerprint) in one transaction; per rule ``{"kind",
        "name", "changed", "created"}``. An unchanged rule is not written (nor audited)."""
        items = list(items)

        def txn(s: Session) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for document, fingerprint in items:
                name = document["metadata"]["name"]
                row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.name == name))
                created = row is None
                changed = created or row.fingerprint != fingerprint  # type: ignore[union-attr]
                if row is None:
                    row = AlertRuleRow(name=name, created_by=by)
                    s.add(row)
                if changed:
                    row.spec, row.fingerprint, row.updated_at = document, fingerprint, utcnow()
                out.append({"kind": "AlertRule", "name": name, "changed": changed, "created": created})
            for result, (document, _) in zip(out, items, strict=True):
                if result["changed"]:
                    append(
                        s, actor=by, action="alertrule.apply", object=result["name"], details=document["spec"]
                    )
            return out

        return self._db.transaction(txn, write=True)

    def rules(self) -> list[dict[str, Any]]:
        """Every applied AlertRule document, by name."""

        def txn(s: Session) -> list[dict[str, Any]]:
            return [r.spec for r in s.scalars(select(AlertRuleRow).order_by(AlertRuleRow.name))]

        return self._db.transaction(txn)

    def delete_rule(self, name: str, *, by: str | None) -> None:
        """Delete an AlertRule; its alerts resolve at the next evaluation. NotFound if there is none."""

        def txn(s: Session) -> None:
            row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.name == name))
            if row is None:
                raise errors.NotFound(f"no AlertRule named {name!r} (see `conveyor alerts rules`)")
            s.delete(row)
            append(s, actor=by, action="alertrule.delete", object=name)

        self._db.transaction(txn, write=True)

    # -- alert states ----------------------------------------------------------------------------------

    def save(self, alerts: Mapping[Key, Alert], removed: Iterable[Key] = ()) -> None:
        """Write ``alerts`` (insert or update by key) and delete the ``removed`` keys, in one transaction."""
        removed = list(removed)

        def txn(s: Session) -> None:
            for key in removed:
                s.execute(
                    delete(AlertRow).where(
                        AlertRow.rule == key[0], AlertRow.deployment == key[1], AlertRow.version == key[2]
                    )
                )
            rows = {(r.rule, r.deployment, r.version): r for r in s.scalars(select(AlertRow))}
            for key, alert in alerts.items():
                row = rows.get(key)
                if row is None:
                    row = AlertRow(rule=key[0], deployment=key[1], version=key[2])
                    s.add(row)
                row.severity, row.state, row.value = alert.severity, alert.state, alert.value
                row.active_since = _time(alert.active_since)
                row.fired_at = _time(alert.fired_at) if alert.fired_at is not None else None
                row.resolved_at = _time(alert.resolved_at) if alert.resolved_at is not None else None
                row.labels, row.annotations = dict(alert.labels), dict(alert.annotations)

        self._db.transaction(txn, write=True)

    def load(self) -> dict[Key, Alert]:
        """Every stored alert, by key."""

        def txn(s: Session) -> dict[Key, Alert]:
            alerts = [_alert(r) for r in s.scalars(select(AlertRow).order_by(AlertRow.id))]
            return {a.key: a for a in alerts}

        return self._db.transaction(txn)


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _alert(r: AlertRow) -> Alert:
    return Alert(
        rule=r.rule,
        deployment=r.deployment,
        version=r.version,
        severity=r.severity,
        state=r.state,  # type: ignore[arg-type]  # written from an Alert
        value=r.value,
        active_since=r.active_since.timestamp(),
        fired_at=_seconds(r.fired_at),
        resolved_at=_seconds(r.resolved_at),
        labels=dict(r.labels),
        annotations=dict(r.annotations),
    )
