"""The rollout tables in a backup (migration 0006): each rollout keyed by (deployment, number), its events by
the same key in the order written. Absent from archives of schema 0005 or older (restored as none).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.archive import iso, iso_or_none, parse_time, time_or_none
from conveyor.registry.orm import DeploymentRow, RolloutEventRow, RolloutRow
from conveyor.registry.records import ROLLOUT_ACTIVE_PHASES, ROLLOUT_ENDED_PHASES

_FIELDS = (
    *("number", "strategy", "phase", "stable_revision", "candidate_revision", "stable_model"),
    *("candidate_model", "step", "weight", "failed_checks", "passed_checks", "spec", "started_by"),
    *("reason", "forced"),
)
_TIMES = ("started_at", "step_started_at", "updated_at")


def dump_rollout_rows(s: Session, deployments: dict[int, DeploymentRow]) -> dict[str, list[dict[str, Any]]]:
    """Rollouts by (deployment name, number), events by rollout then id: the same registry, the same JSON."""
    rollouts = sorted(
        s.scalars(select(RolloutRow)), key=lambda r: (deployments[r.deployment_id].name, r.number)
    )
    keys = {r.id: (deployments[r.deployment_id].name, r.number) for r in rollouts}
    events = sorted(s.scalars(select(RolloutEventRow)), key=lambda e: (keys[e.rollout_id], e.id))
    return {
        "rollouts": [
            {
                "deployment": keys[r.id][0],
                **{k: getattr(r, k) for k in _FIELDS},
                **{k: iso(getattr(r, k)) for k in _TIMES},
                "finished_at": iso_or_none(r.finished_at),
            }
            for r in rollouts
        ],
        "rollout_events": [
            {
                "deployment": keys[e.rollout_id][0],
                "number": keys[e.rollout_id][1],
                "at": iso(e.at),
                "kind": e.kind,
                "message": e.message,
                "data": e.data,
            }
            for e in events
        ],
    }


def check_rollout_rows(rows: dict[str, Any], deployments: set[str]) -> None:
    """InvalidInput unless each rollout belongs to a deployment of the archive, its (deployment, number)
    appears once, its phase is known and at most one per deployment is active, and each event belongs to a
    rollout: a restore never trips the tables' constraints halfway through."""
    keys: set[tuple[str, int]] = set()
    active: set[str] = set()
    for r in rows.get("rollouts", []):
        key = (r["deployment"], r["number"])
        if key[0] not in deployments:
            raise errors.InvalidInput(f"a rollout of an unknown deployment {key[0]!r}")
        if key in keys:
            raise errors.InvalidInput(f"rollout {key[1]} of deployment {key[0]!r} appears twice")
        keys.add(key)
        if r["phase"] not in (*ROLLOUT_ACTIVE_PHASES, *ROLLOUT_ENDED_PHASES):
            raise errors.InvalidInput(f"rollout {key[1]} of {key[0]!r} has an unknown phase {r['phase']!r}")
        if r["phase"] in ROLLOUT_ACTIVE_PHASES:
            if key[0] in active:
                raise errors.InvalidInput(f"deployment {key[0]!r} has two active rollouts")
            active.add(key[0])
    for e in rows.get("rollout_events", []):
        if (e["deployment"], e["number"]) not in keys:
            raise errors.InvalidInput(f"an event of a missing rollout {e['number']} of {e['deployment']!r}")


def insert_rollout_rows(s: Session, rows: dict[str, Any], deployments: dict[str, DeploymentRow]) -> None:
    made: dict[tuple[str, int], RolloutRow] = {}
    for r in rows.get("rollouts", []):
        made[(r["deployment"], r["number"])] = RolloutRow(
            deployment_id=deployments[r["deployment"]].id,
            **{k: r[k] for k in _FIELDS},
            **{k: parse_time(r[k]) for k in _TIMES},
            finished_at=time_or_none(r["finished_at"]),
        )
    s.add_all(made.values())
    s.flush()  # ids for the events
    s.add_all(
        RolloutEventRow(
            rollout_id=made[(e["deployment"], e["number"])].id,
            at=parse_time(e["at"]),
            kind=e["kind"],
            message=e["message"],
            data=e["data"],
        )
        for e in rows.get("rollout_events", [])
    )
    s.flush()
