"""The audit chain's verify names the first edited, removed, inserted or reordered record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conveyor.security.audit_chain import GENESIS, canonical_bytes, hash_of, record_hash, verify

T0 = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Rec:
    seq: int
    time: datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


def chain(n: int) -> list[Rec]:
    out: list[Rec] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        r = Rec(seq, T0 + timedelta(seconds=seq), "alice", "model.register", f"iris:{seq}", {"v": seq}, prev)
        r = replace(r, hash=hash_of(r))
        out.append(r)
        prev = r.hash
    return out


def rehash(r: Rec) -> Rec:
    return replace(r, hash=hash_of(r))


def test_an_intact_chain_and_an_empty_one_verify() -> None:
    assert verify(chain(5)) is None
    assert verify([]) is None


def test_canonical_bytes_sort_keys_and_write_time_in_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    data = canonical_bytes(
        seq=1,
        time=T0.astimezone(paris),
        actor="a",
        action="x",
        object="o",
        details={"b": 1, "a": {"z": 1, "y": 2}},
        prev_hash=GENESIS,
    )
    assert data == (
        b'{"action":"x","actor":"a","details":{"a":{"y":2,"z":1},"b":1},"object":"o",'
        b'"prev_hash":"' + GENESIS.encode() + b'","seq":1,"time":"2026-12-01T10:00:00.123456+00:00"}'
    )
    whole_second = T0.replace(microsecond=0)
    assert b'"time":"2026-12-01T10:00:00.000000+00:00"' in canonical_bytes(
        seq=1, time=whole_second, actor="a", action="x", object="o", details={}, prev_hash=GENESIS
    )


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record_hash(
            seq=1, time=datetime(2026, 1, 1), actor="a", action="x", object="o", details={}, prev_hash=GENESIS
        )


@pytest.mark.parametrize("field_name", ["actor", "action", "object", "details", "time"])
def test_an_edited_record_is_named_by_its_seq(field_name: str) -> None:
    records = chain(5)
    value: Any = {"v": 99} if field_name == "details" else T0 if field_name == "time" else "mallory"
    records[2] = replace(records[2], **{field_name: value})
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "edited")
    assert str(problem) == "seq 3: its content does not match its hash: the record was edited"


def test_a_removed_record_is_named_by_the_missing_seq() -> None:
    records = chain(5)
    del records[2]
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "removed")
    assert "goes from seq 2 to seq 4" in problem.message


def test_records_removed_from_the_start_are_found() -> None:
    problem = verify(chain(5)[2:])
    assert problem is not None
    assert (problem.seq, problem.kind) == (1, "removed")
    assert "starts at seq 3" in problem.message


def test_a_removed_record_with_the_later_ones_renumbered_breaks_the_link() -> None:
    records = chain(5)
    del records[1]
    records[1:] = [replace(r, seq=r.seq - 1) for r in records[1:]]  # seq 3 -> 2, ...: no gap left
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, "relinked")
    assert "not the hash of seq 1" in problem.message


def test_two_swapped_records_are_found_as_reordered_at_the_first() -> None:
    records = chain(5)
    records[1], records[2] = replace(records[2], seq=2), replace(records[1], seq=3)  # seq values swapped
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, "reordered")
    assert "the record now at seq 3" in problem.message


def test_records_read_out_of_seq_order_are_reordered() -> None:
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "reordered")
    assert problem.message == "out of order: it comes before seq 2"
    problem = verify([records[0], records[2], records[2]])
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, "reordered")


def test_an_inserted_record_is_found_at_the_record_after_it() -> None:
    records = chain(5)
    fake = rehash(Rec(3, T0, "mallory", "model.delete", "iris:1", {}, records[1].hash))
    later = [replace(r, seq=r.seq + 1) for r in records[2:]]  # renumbered to make room
    problem = verify([*records[:2], fake, *later])
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "inserted")
    assert "chains to seq 2" in problem.message


def test_an_edited_record_with_its_hash_recomputed_breaks_the_next_link() -> None:
    records = chain(5)
    records[2] = rehash(replace(records[2], actor="mallory"))
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "relinked")


def test_a_first_record_not_chained_to_genesis_is_found() -> None:
    records = chain(2)
    records[0] = rehash(replace(records[0], prev_hash="1" * 64))
    problem = verify(records)
    assert problem is not None
    assert (problem.seq, problem.kind) == (1, "relinked")
    assert "the start of the log" in problem.message


def test_problem_is_frozen() -> None:
    problem = verify(chain(2)[1:])
    assert problem is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.seq = 5  # type: ignore[misc]
