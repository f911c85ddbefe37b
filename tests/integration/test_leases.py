"""The leader lease on SQLite and PostgreSQL: taking, renewing, expiry, release, and many clients racing for
it never holding it at the same time."""

from __future__ import annotations

import random
import threading
import time

import pytest

from conveyor.registry.db import Database
from conveyor.registry.leases import LeaseStore


def _leases(url: str) -> tuple[Database, LeaseStore]:
    db = Database(url)
    db.upgrade()
    return db, LeaseStore(db)


def test_one_holder_until_expiry_or_release(fresh_url: str) -> None:
    db, leases = _leases(fresh_url)
    try:
        assert leases.current("cp") is None
        a = leases.acquire("cp", "a", 30, "http://a:8000")
        assert a is not None and (a.holder, a.address, a.term) == ("a", "http://a:8000", 1)
        assert a.expires_at == pytest.approx(a.now + 30, abs=1)
        assert leases.acquire("cp", "b", 30) is None  # held: refused, nothing changed
        again = leases.acquire("cp", "a", 30, "http://a:8000")
        assert again is not None and again.term == 1 and again.acquired_at == a.acquired_at  # renewed
        assert leases.release("cp", "a") and not leases.release("cp", "b")
        b = leases.acquire("cp", "b", 0.2)
        assert b is not None and b.term == 2 and b.holder == "b"
        time.sleep(0.4)
        expired = leases.current("cp")
        assert expired is not None and expired.expired
        c = leases.acquire("cp", "c", 30)
        assert c is not None and c.term == 3 and not c.expired
        assert leases.acquire("other", "b", 30) is not None  # leases are by name
    finally:
        db.dispose()


TTL_S = 1.0
RUN_S = 4.0


Held = list[tuple[str, int, float, float]]


def _campaign(url: str, worker: int, start: threading.Barrier, held: Held) -> None:
    """Race for the lease for RUN_S: hold it for a few renewals, then let it lapse. Record when this worker
    knew it led (from the answer) until when it believed so (from before the ask, less the margin)."""
    db, leases = _leases(url)  # an engine of its own: its own connections, as another machine has
    me, rnd = f"w{worker}", random.Random(worker)
    start.wait(timeout=60)
    until = time.monotonic() + RUN_S
    renewals = 0
    try:
        while time.monotonic() < until:
            asked = time.monotonic()
            lease = leases.acquire("cp", me, TTL_S)
            answered = time.monotonic()
            if lease is None:
                time.sleep(rnd.uniform(0, TTL_S / 10))
                continue
            held.append((me, lease.term, answered, asked + TTL_S - TTL_S / 6))
            renewals += 1
            if renewals >= rnd.randint(1, 3):  # step down without a word: the others wait out the expiry
                renewals = 0
                time.sleep(TTL_S * 1.2)
            else:
                time.sleep(TTL_S / 3)
    finally:
        db.dispose()


def test_racing_holders_never_hold_the_lease_at_once(fresh_url: str) -> None:
    """Eight threads, each with its own engine (the database sees eight clients), campaign for RUN_S."""
    _leases(fresh_url)[0].dispose()  # migrated once, before the race
    workers = 8
    start, held = threading.Barrier(workers), Held()  # list.append is atomic under the GIL
    threads = [threading.Thread(target=_campaign, args=(fresh_url, w, start, held)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=RUN_S + 60)
        assert not t.is_alive(), "a campaigner hung"
    intervals = sorted((start, end, who, term) for who, term, start, end in held if end > start)
    assert len({term for *_, term in intervals}) >= 3, f"the lease changed hands too rarely: {intervals}"
    for s1, e1, w1, t1 in intervals:
        for s2, _, w2, t2 in intervals:
            if w1 != w2 and s1 <= s2:
                assert e1 <= s2, f"{w1} (term {t1}) believed it led until {e1:.3f}, {w2} led from {s2:.3f}"
                assert t2 > t1, "a later holder got an older term"
