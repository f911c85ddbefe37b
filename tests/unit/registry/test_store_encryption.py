"""An encrypting store: blobs on disk are ciphertext, digests stay the plaintext's, old blobs still read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.digests import read_artifact
from conveyor.registry import LocalArtifactStore
from conveyor.security.encryption import ArtifactCipher, is_encrypted
from tests.unit.registry.conftest import SIG

CIPHER = ArtifactCipher(os.urandom(32))


def test_blobs_are_stored_encrypted_under_the_plaintext_digest(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, CIPHER)
    data = os.urandom(2 * 1024 * 1024 + 5)
    src = tmp_path / "m.onnx"
    src.write_bytes(data)
    sha, size = store.put_file(src)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    on_disk = store.location(sha).read_bytes()
    assert is_encrypted(on_disk) and data not in on_disk
    assert store.read_bytes(sha) == data
    assert store.path(sha) == store.location(sha)  # verified by decrypting
    assert read_artifact("m:1", store.location(sha), sha, CIPHER) == data  # what a replica does
    assert store.put_bytes(data) == (sha, len(data))  # still content-addressed


def test_blobs_stored_before_encryption_keep_working(tmp_path: Path) -> None:
    sha, _ = LocalArtifactStore(tmp_path).put_bytes(b"old model")
    store = LocalArtifactStore(tmp_path, CIPHER)
    assert store.read_bytes(sha) == b"old model"
    assert store.path(sha).read_bytes() == b"old model"


def test_reading_without_the_key_or_with_another_is_one_clear_error(tmp_path: Path) -> None:
    sha, _ = LocalArtifactStore(tmp_path, CIPHER).put_bytes(b"secret model")
    with pytest.raises(
        errors.IntegrityError, match=rf"artifact {sha} is encrypted .* no artifact key is set"
    ):
        LocalArtifactStore(tmp_path).read_bytes(sha)
    with pytest.raises(errors.IntegrityError, match=r"is encrypted with artifact key .* but the key set is"):
        LocalArtifactStore(tmp_path, ArtifactCipher(os.urandom(32))).path(sha)
    with pytest.raises(errors.IntegrityError, match="no artifact key is set"):
        read_artifact("m:1", LocalArtifactStore(tmp_path).location(sha), sha)


def test_a_tampered_encrypted_blob_is_refused(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, CIPHER)
    sha, _ = store.put_bytes(b"model")
    blob = store.location(sha)
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(errors.IntegrityError, match=f"artifact {sha} is corrupt"):
        store.read_bytes(sha)
    with pytest.raises(errors.IntegrityError, match=r"model m:1: artifact .* is corrupt"):
        read_artifact("m:1", blob, sha, CIPHER)


def test_a_backup_of_an_encrypted_store_restores_under_another_key(tmp_path: Path) -> None:
    from conveyor.registry import Registry
    from conveyor.registry.backup import backup
    from conveyor.registry.restore import restore

    with Registry(f"sqlite:///{tmp_path / 'a.db'}", LocalArtifactStore(tmp_path / "a", CIPHER)) as source:
        v = source.register("m", b"secret model", signature=SIG, framework="onnx")
        backup(source, tmp_path / "b.tar.gz")
    other = ArtifactCipher(os.urandom(32))
    with Registry(f"sqlite:///{tmp_path / 'b.db'}", LocalArtifactStore(tmp_path / "b", other)) as target:
        restore(target, tmp_path / "b.tar.gz")
        assert target.artifact_bytes(target.resolve("m:1")) == b"secret model"
        assert is_encrypted(target.artifact_location(v).read_bytes())
