"""The alert tables in a backup (migration 0005): applied ``kind: AlertRule`` resources and alert states.

Both are keyed by names, not ids, and absent from archives of schema 0004 or older (restored as none).
"""

from __future__ import annotations

from typing import Any, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.observe.alert_state import State
from conveyor.registry.archive import iso, iso_or_none, parse_time, time_or_none
from conveyor.registry.orm import AlertRow, AlertRuleRow

_ALERT_FIELDS = ("rule", "deployment", "version", "severity", "state", "value", "labels", "annotations")
_STATES = frozenset(get_args(State))


def dump_alert_rows(s: Session) -> dict[str, list[dict[str, Any]]]:
    """Rules by name, alerts by (rule, deployment, version): the same registry gives the same JSON."""
    rules = s.scalars(select(AlertRuleRow).order_by(AlertRuleRow.name))
    alerts = s.scalars(select(AlertRow).order_by(AlertRow.rule, AlertRow.deployment, AlertRow.version))
    return {
        "alert_rules": [
            {
                "name": r.name,
                "spec": r.spec,
                "fingerprint": r.fingerprint,
                "created_at": iso(r.created_at),
                "updated_at": iso(r.updated_at),
                "created_by": r.created_by,
            }
            for r in rules
        ],
        "alerts": [
            {
                **{k: getattr(a, k) for k in _ALERT_FIELDS},
                "active_since": iso(a.active_since),
                "fired_at": iso_or_none(a.fired_at),
                "resolved_at": iso_or_none(a.resolved_at),
            }
            for a in alerts
        ],
    }


def check_alert_rows(rows: dict[str, Any]) -> None:
    """InvalidInput unless each rule name and alert key appears once and each state is a known one, so a
    restore never trips the tables' unique constraints halfway through."""
    names = [r["name"] for r in rows.get("alert_rules", [])]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise errors.InvalidInput("an alert rule has no name or its name appears twice")
    keys = [(a["rule"], a["deployment"], a["version"]) for a in rows.get("alerts", [])]
    if len(set(keys)) != len(keys):
        raise errors.InvalidInput("an alert (rule, deployment, version) appears twice")
    for a in rows.get("alerts", []):
        if a["state"] not in _STATES:
            raise errors.InvalidInput(f"alert {a['rule']!r} has an unknown state {a['state']!r}")


def insert_alert_rows(s: Session, rows: dict[str, Any]) -> None:
    s.add_all(
        AlertRuleRow(
            name=r["name"],
            spec=r["spec"],
            fingerprint=r["fingerprint"],
            created_at=parse_time(r["created_at"]),
            updated_at=parse_time(r["updated_at"]),
            created_by=r["created_by"],
        )
        for r in rows.get("alert_rules", [])
    )
    s.add_all(
        AlertRow(
            **{k: a[k] for k in _ALERT_FIELDS},
            active_since=parse_time(a["active_since"]),
            fired_at=time_or_none(a["fired_at"]),
            resolved_at=time_or_none(a["resolved_at"]),
        )
        for a in rows.get("alerts", [])
    )
    s.flush()
