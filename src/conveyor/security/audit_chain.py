"""The audit log's hash chain, as pure functions: the canonical bytes of a record, its SHA-256, and
``verify``, which finds the first edited, removed, inserted or reordered record of a chain read in seq order.

A record's hash covers its seq, time, actor, action, object, details and the hash of the record before it
(``prev_hash``; the first record's is ``GENESIS``). Anyone who can write the database can still rewrite the
whole chain from the point they change: keep the head hash elsewhere to notice that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

GENESIS = "0" * 64
"""The ``prev_hash`` of the first record."""

ProblemKind = Literal["edited", "removed", "inserted", "reordered", "relinked"]


class ChainRecord(Protocol):
    """What ``verify`` reads of a record (the ORM row and the registry's ``AuditEntry`` both have it)."""

    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object(self) -> str: ...
    @property
    def details(self) -> Mapping[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class Problem:
    """The first bad record of a chain: its ``seq``, what is wrong with it (``kind``) and a sentence."""

    seq: int
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.message}"


def canonical_time(time: datetime) -> str:
    """ISO 8601 in UTC with microseconds, whatever zone ``time`` carries (it must carry one)."""
    if time.tzinfo is None:
        raise ValueError("an audit record's time must be timezone-aware")
    return time.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_bytes(
    *,
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    object: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The bytes a record's hash is taken of: orjson, keys sorted at every depth."""
    return orjson.dumps(
        {
            "seq": seq,
            "time": canonical_time(time),
            "actor": actor,
            "action": action,
            "object": object,
            "details": dict(details),
            "prev_hash": prev_hash,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def record_hash(
    *,
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    object: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of ``canonical_bytes``."""
    data = canonical_bytes(
        seq=seq, time=time, actor=actor, action=action, object=object, details=details, prev_hash=prev_hash
    )
    return hashlib.sha256(data).hexdigest()


def hash_of(record: ChainRecord) -> str:
    """What ``record.hash`` should be, computed from its content."""
    return record_hash(
        seq=record.seq,
        time=record.time,
        actor=record.actor,
        action=record.action,
        object=record.object,
        details=record.details,
        prev_hash=record.prev_hash,
    )


def verify(records: Iterable[ChainRecord]) -> Problem | None:
    """The first problem of a chain read in ``seq`` order (the order stored), or None when it is intact.

    Checked per record, in this order: its ``seq`` follows the one before (1 first), its ``prev_hash`` is the
    hash of the one before, its ``hash`` is that of its content. A removed record at the END of the chain
    (or a rewritten tail) is not found here: compare the head hash with one kept elsewhere.
    """
    chain = list(records)
    seq_of_hash = {r.hash: r.seq for r in chain}
    seqs = {r.seq for r in chain}
    prev: ChainRecord | None = None
    for record in chain:
        expected_seq = 1 if prev is None else prev.seq + 1
        if record.seq < expected_seq:
            after = "" if prev is None else f" after seq {prev.seq}"
            return Problem(record.seq, "reordered", f"out of order: it comes{after}")
        if record.seq > expected_seq and expected_seq in seqs:
            return Problem(record.seq, "reordered", f"out of order: it comes before seq {expected_seq}")
        if record.seq > expected_seq:
            return Problem(expected_seq, "removed", _gap(prev, record.seq))
        expected_prev = GENESIS if prev is None else prev.hash
        if record.prev_hash != expected_prev:
            return _relinked(record, expected_seq, seq_of_hash.get(record.prev_hash))
        if hash_of(record) != record.hash:
            return Problem(record.seq, "edited", "its content does not match its hash: the record was edited")
        prev = record
    return None


def _gap(prev: ChainRecord | None, found: int) -> str:
    if prev is None:
        return f"missing: the log starts at seq {found} (records removed from its start)"
    missing = prev.seq + 1 if found == prev.seq + 2 else f"{prev.seq + 1}-{found - 1}"
    return f"missing: the chain goes from seq {prev.seq} to seq {found} (record(s) {missing} removed)"


def _relinked(record: ChainRecord, seq: int, links_to: int | None) -> Problem:
    """``record`` does not chain to the record before it: say to what it does chain, if anything."""
    before = "the start of the log" if seq == 1 else f"seq {seq - 1}"
    if links_to is not None and links_to > seq:
        why = f"it chains to the record now at seq {links_to}, not to {before}: records were reordered"
        return Problem(seq, "reordered", why)
    if links_to is not None:
        why = f"it chains to seq {links_to}, not to {before}: a record was inserted before it"
        return Problem(seq, "inserted", why)
    why = (
        f"its prev_hash is not the hash of {before}: a record before it was removed, or one was rewritten "
        "(hashes recomputed)"
    )
    return Problem(seq, "relinked", why)
