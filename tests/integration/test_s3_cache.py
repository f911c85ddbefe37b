"""The S3 store's local cache is bounded (CONVEYOR_ARTIFACT_CACHE_MB): least recently used artifacts go
first, never one used within the idle window; against a real S3-compatible server on loopback (moto's server
mode)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from conveyor.digests import read_artifact
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.s3store import S3ArtifactStore
from conveyor.settings import Settings

SIZE = 300_000


def _store(server: str, bucket: str, cache: Path, cache_bytes: int, idle_s: float) -> S3ArtifactStore:
    return S3ArtifactStore(
        f"s3://{bucket}/models",
        LocalArtifactStore(cache),
        endpoint_url=server,
        cache_bytes=cache_bytes,
        cache_idle_s=idle_s,
    )


def _uploaded(server: str, bucket: str, tmp_path: Path, n: int) -> list[str]:
    """``n`` artifacts of SIZE bytes put from another machine (its own cache, unbounded)."""
    there = _store(server, bucket, tmp_path / "uploader", 1 << 40, 0)
    return [there.put_bytes(os.urandom(SIZE))[0] for _ in range(n)]


def _used_ago(store: S3ArtifactStore, sha256: str, seconds: float) -> None:
    """As if the artifact was last used ``seconds`` ago (its mtime is when it was last used)."""
    when = time.time() - seconds
    os.utime(store.cache.location(sha256), (when, when))


def _cached(store: S3ArtifactStore, shas: list[str]) -> list[bool]:
    return [store.cache.exists(sha) for sha in shas]


def test_the_least_recently_used_artifacts_are_evicted_to_keep_the_cache_under_its_bound(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    a, b, c, _ = shas = _uploaded(s3_server, s3_bucket, tmp_path, 4)
    store = _store(s3_server, s3_bucket, tmp_path / "cache", 2 * SIZE + SIZE // 2, idle_s=60)
    store.path(a), store.path(b)
    _used_ago(store, a, 300)
    _used_ago(store, b, 200)
    store.location(a)  # a replica is about to load a: used now, b is the least recently used
    assert store.read_bytes(c)  # a third: over the bound, b goes
    assert _cached(store, shas) == [True, False, True, False] and store.evicted == 1
    _used_ago(store, a, 120)
    store.path(b)  # needed again: downloaded again (verified), a goes
    assert _cached(store, shas) == [False, True, True, False]
    assert read_artifact("m:1", store.location(b), b)  # what a replica then does
    assert store.evicted == 2
    assert sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file()) == 2 * SIZE


def test_an_artifact_used_within_the_idle_window_is_never_evicted_and_the_cache_says_it_is_over(
    s3_server: str, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shas = _uploaded(s3_server, s3_bucket, tmp_path, 3)
    store = _store(s3_server, s3_bucket, tmp_path / "cache", SIZE, idle_s=60)
    with caplog.at_level(logging.WARNING, logger="conveyor.registry.s3store"):
        for sha in shas:  # each one used (loaded) within the minute: all kept, over the bound
            store.path(sha)
    assert _cached(store, shas) == [True, True, True] and store.evicted == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "conveyor.registry.s3store"]
    assert warning == (
        f"the artifact cache {tmp_path / 'cache'} holds 0.6 MiB, over its 0.3 MiB: every artifact in it is "
        "in use or was used within 60s (CONVEYOR_ARTIFACT_CACHE_MB, CONVEYOR_ARTIFACT_CACHE_IDLE_S)"
    )
    for sha in shas[:2]:
        _used_ago(store, sha, 61)
    store.put_bytes(os.urandom(SIZE))  # a put lands in the cache too: now the two idle ones go
    assert _cached(store, shas) == [False, False, True] and store.evicted == 2


def test_an_artifact_being_downloaded_or_read_here_is_not_evicted_even_when_idle(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    a, b, c = shas = _uploaded(s3_server, s3_bucket, tmp_path, 3)
    store = _store(s3_server, s3_bucket, tmp_path / "cache", SIZE, idle_s=0)  # only pins protect
    store.path(a)
    with store._pinned(a):  # a thread of this process reading a (as path and read_bytes pin it)
        store.path(b)  # over the bound: a is idle but pinned, b pinned by its own download
        assert _cached(store, shas) == [True, True, False] and store.evicted == 0
    store.path(c)  # nothing pinned but c: a and b go
    assert _cached(store, shas) == [False, False, True] and store.evicted == 2


def test_the_bound_comes_from_the_settings(s3_server: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        artifacts_url=f"s3://{s3_bucket}/models",
        s3_endpoint_url=s3_server,
        artifact_cache_mb=3,
        artifact_cache_idle_s=5,
    )
    registry = Registry.from_settings(settings)
    try:
        store = registry.store
        assert isinstance(store, S3ArtifactStore)
        assert (store.cache_bytes, store.cache_idle_s) == (3 << 20, 5.0)
        assert store.cache.root == settings.artifacts_cache_dir
    finally:
        registry.close()
    defaults = Settings(home=tmp_path)
    assert (defaults.artifact_cache_mb, defaults.artifact_cache_idle_s) == (10240, 600.0)
