"""The agent's cache (edge/agent/cache.py): an entry appears whole, the current one survives a restart, the
oldest go beyond ``keep`` but never the current one, and a damaged entry is not offered."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conveyor.edge.agent.cache import EdgeCache


def admit(cache: EdgeCache, version: str, content: bytes) -> str:
    sha = hashlib.sha256(content).hexdigest()
    partial = cache.partial(sha)
    partial.write_bytes(content)
    entry = cache.admit("clf", version, sha, partial)
    assert not partial.exists() and Path(entry.path).read_bytes() == content
    return sha


def test_an_admitted_version_is_found_by_its_digest_and_the_current_one_survives_a_restart(
    tmp_path: Path,
) -> None:
    cache = EdgeCache(tmp_path / "edge" / "clf")
    sha = admit(cache, "1", b"one")
    entry = cache.find("clf", "1", sha)
    assert entry is not None and entry.size == 3 and entry.label == "clf:1"
    assert cache.find("clf", "1", "0" * 64) is None
    assert cache.current() is None
    cache.set_current(entry)
    assert EdgeCache(tmp_path / "edge" / "clf").current() == entry  # what a restarted agent reads
    assert not list(cache.versions_dir.glob(".tmp-*"))


def test_prune_keeps_the_newest_and_always_the_current_one(tmp_path: Path) -> None:
    cache = EdgeCache(tmp_path, keep=2)
    shas = [admit(cache, str(v), f"v{v}".encode()) for v in (1, 2, 3, 4)]
    first = cache.find("clf", "1", shas[0])
    assert first is not None
    cache.set_current(first)  # a rollback to the oldest
    removed = cache.prune()
    assert [e.version for e in removed] == ["2", "3"]
    assert [e.version for e in cache.entries()] == ["1", "4"]


def test_an_entry_whose_file_is_damaged_or_gone_is_not_offered(tmp_path: Path) -> None:
    cache = EdgeCache(tmp_path)
    sha = admit(cache, "1", b"one")
    entry = cache.find("clf", "1", sha)
    assert entry is not None
    Path(entry.path).write_bytes(b"on")  # truncated: the size says so
    assert cache.find("clf", "1", sha) is None
    Path(entry.path).unlink()
    assert cache.entries() == []
    with pytest.raises(ValueError, match="at least one"):
        EdgeCache(tmp_path, keep=0)
