"""Named leases in the registry database: one holder at a time, until an expiry on the database's clock.

The control planes on one registry elect their leader with the ``control-plane`` lease (control/leader.py).
Taking or renewing it is one conditional UPDATE (``holder = me OR expires_at < now``) in one transaction:
PostgreSQL re-checks the condition on the newest row version when two updates race, SQLite runs writers one
at a time, so two holders never both succeed. Expiry is on the database's clock (PostgreSQL's
``clock_timestamp()``, SQLite's ``julianday('now')``): machines' clocks may disagree, one database's cannot.
A holder counts its lease from just *before* it asked, on its own monotonic clock, so it always believes the
lease ends before the database lets anyone else take it (docs/operations.md, Two control planes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from conveyor.registry.db import Database

__all__ = ["Lease", "LeaseStore"]

_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    address: str | None
    term: int
    """How many times the lease changed holder: a fencing token (a later holder has a larger term)."""
    acquired_at: float
    expires_at: float
    """Epoch seconds by the database's clock."""
    now: float
    """The database's clock when this was read."""

    @property
    def expired(self) -> bool:
        return self.expires_at < self.now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeaseStore:
    """Acquire, renew, read and release named leases on one registry database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._now = _NOW[db.dialect]

    def acquire(self, name: str, holder: str, ttl_s: float, address: str | None = None) -> Lease | None:
        """Take the lease, or renew it when ``holder`` has it, for ``ttl_s`` from now; None when another
        holder's lease has not expired."""

        def txn(s: Session) -> Lease | None:
            s.execute(
                text(
                    "INSERT INTO leases (name, holder, address, term, acquired_at, expires_at) "
                    "VALUES (:name, '', NULL, 0, 0, 0) ON CONFLICT (name) DO NOTHING"
                ),
                {"name": name},
            )
            now = self._now
            taken = s.execute(
                text(
                    "UPDATE leases SET "
                    "term = CASE WHEN holder = :me THEN term ELSE term + 1 END, "
                    f"acquired_at = CASE WHEN holder = :me THEN acquired_at ELSE {now} END, "
                    f"holder = :me, address = :address, expires_at = {now} + :ttl "
                    f"WHERE name = :name AND (holder = :me OR expires_at < {now})"
                ),
                {"name": name, "me": holder, "address": address, "ttl": float(ttl_s)},
            )
            if getattr(taken, "rowcount", 0) != 1:
                return None
            return self._read(s, name)

        return self._db.transaction(txn, write=True)

    def current(self, name: str) -> Lease | None:
        """The lease as stored (maybe expired: see ``Lease.expired``), or None if never taken."""
        return self._db.transaction(lambda s: self._read(s, name))

    def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease now, so the next one takes over at its next try; False if not held."""

        def txn(s: Session) -> bool:
            done = s.execute(
                text(f"UPDATE leases SET expires_at = {self._now} - 1 WHERE name = :name AND holder = :me"),
                {"name": name, "me": holder},
            )
            return getattr(done, "rowcount", 0) == 1

        return self._db.transaction(txn, write=True)

    def _read(self, s: Session, name: str) -> Lease | None:
        row = s.execute(
            text(
                "SELECT name, holder, address, term, acquired_at, expires_at, "
                f"{self._now} AS now FROM leases WHERE name = :name"
            ),
            {"name": name},
        ).first()
        if row is None or not row.holder:
            return None
        return Lease(
            row.name,
            row.holder,
            row.address,
            int(row.term),
            float(row.acquired_at),
            float(row.expires_at),
            float(row.now),
        )
