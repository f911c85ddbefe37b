"""Which artifacts the S3 store's cache evicts: least recently used first, never a pinned or recent one."""

from __future__ import annotations

from pathlib import Path

from conveyor.registry.s3store import CachedBlob, evictable


def blob(name: str, size: int, used: float) -> CachedBlob:
    return CachedBlob(name, Path(name), size, used)


def test_the_least_recently_used_go_first_until_the_rest_fits() -> None:
    cached = [blob("c", 10, 30.0), blob("a", 10, 10.0), blob("b", 10, 20.0)]
    assert [b.sha256 for b in evictable(cached, 15, used_before=100.0, pinned=set())] == ["a", "b"]
    assert evictable(cached, 30, used_before=100.0, pinned=set()) == []


def test_pinned_and_recently_used_artifacts_stay_even_over_the_bound() -> None:
    cached = [blob("a", 10, 10.0), blob("b", 10, 20.0), blob("c", 10, 30.0)]
    assert [b.sha256 for b in evictable(cached, 0, used_before=25.0, pinned={"a"})] == ["b"]
    assert evictable(cached, 0, used_before=5.0, pinned=set()) == []
