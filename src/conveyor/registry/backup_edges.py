"""The edge_nodes table in a backup (migration 0009): each node by name with its labels and its latest
heartbeat, so `conveyor get edges` after a restore shows the nodes it showed before (they report again at
their next heartbeat). Absent from archives of schema 0008 or older (restored as none)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.archive import iso, parse_time
from conveyor.registry.edges import check_edge
from conveyor.registry.orm import EdgeNodeRow

_FIELDS = ("deployment", "labels", "address", "agent_version", "version", "health", "requests", "failed")
_MORE = ("problem", "cached")


def dump_edge_rows(s: Session) -> dict[str, list[dict[str, Any]]]:
    """Nodes by name: the same registry gives the same JSON."""
    return {
        "edge_nodes": [
            {
                "name": r.name,
                **{k: getattr(r, k) for k in (*_FIELDS, *_MORE)},
                "registered_at": iso(r.registered_at),
                "last_seen": iso(r.last_seen),
            }
            for r in s.scalars(select(EdgeNodeRow).order_by(EdgeNodeRow.name))
        ]
    }


def check_edge_rows(rows: dict[str, Any]) -> None:
    """InvalidInput unless each node's name, deployment and labels are valid and no name appears twice."""
    names = [r["name"] for r in rows.get("edge_nodes", [])]
    if len(set(names)) != len(names):
        raise errors.InvalidInput("an edge node's name appears twice")
    for r in rows.get("edge_nodes", []):
        check_edge(r["name"], r["deployment"], r["labels"])


def insert_edge_rows(s: Session, rows: dict[str, Any]) -> None:
    s.add_all(
        EdgeNodeRow(
            name=r["name"],
            **{k: r[k] for k in (*_FIELDS, *_MORE)},
            registered_at=parse_time(r["registered_at"]),
            last_seen=parse_time(r["last_seen"]),
        )
        for r in rows.get("edge_nodes", [])
    )
    s.flush()
