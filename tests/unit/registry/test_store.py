from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.registry import LocalArtifactStore


def test_put_bytes_is_content_addressed_and_idempotent(store: LocalArtifactStore) -> None:
    sha, size = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert size == 5
    assert store.put_bytes(b"hello") == (sha, 5)
    assert (store.root / sha[:2] / sha[2:]).is_file()
    assert store.read_bytes(sha) == b"hello"
    assert store.exists(sha)


def test_put_file_streams_a_file(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)
    sha, size = store.put_file(src)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.path(sha).read_bytes() == data


def test_put_file_of_a_missing_file_is_not_found(store: LocalArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        store.put_file(tmp_path / "nope.onnx")


def test_no_temp_files_are_left_behind(store: LocalArtifactStore) -> None:
    store.put_bytes(b"a")
    store.put_bytes(b"a")
    store.put_bytes(b"b")
    assert not [p for p in store.root.rglob(".tmp-*")]


def test_a_corrupt_blob_raises_integrity_error_and_returns_nothing(store: LocalArtifactStore) -> None:
    sha, _ = store.put_bytes(b"the real model")
    blob = store.root / sha[:2] / sha[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered model")
    bad = hashlib.sha256(b"tampered model").hexdigest()
    with pytest.raises(errors.IntegrityError) as info:
        store.read_bytes(sha)
    assert str(info.value) == f"artifact {sha} is corrupt: expected sha256 {sha}, got {bad}"
    with pytest.raises(errors.IntegrityError, match="is corrupt"):
        store.path(sha)


def test_storing_the_same_content_again_does_not_touch_the_blob(store: LocalArtifactStore) -> None:
    sha, _ = store.put_bytes(b"x" * 100)
    blob = store.root / sha[:2] / sha[2:]
    before = blob.stat().st_ino
    store.put_bytes(b"x" * 100)
    assert blob.stat().st_ino == before


def test_missing_blob_is_not_found(store: LocalArtifactStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(sha)
    with pytest.raises(errors.NotFound, match=sha):
        store.read_bytes(sha)
    with pytest.raises(errors.NotFound):
        store.path(sha)


def test_delete_removes_and_is_idempotent(store: LocalArtifactStore) -> None:
    sha, _ = store.put_bytes(b"gone soon")
    store.delete(sha)
    assert not store.exists(sha)
    store.delete(sha)


@pytest.mark.parametrize("digest", ["", "abc", "G" * 64, "A" * 64, "../" + "a" * 61])
def test_malformed_digests_are_invalid_input(store: LocalArtifactStore, digest: str) -> None:
    with pytest.raises(errors.InvalidInput, match="invalid artifact digest"):
        store.read_bytes(digest)
