"""The S3 artifact store against a real S3-compatible server on loopback (moto's server mode, over HTTP)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.digests import read_artifact
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.backup import backup
from conveyor.registry.restore import restore
from conveyor.registry.s3store import S3ArtifactStore, parse_s3_url
from conveyor.security.encryption import ArtifactCipher, is_encrypted
from tests.fixtures.s3 import s3_client
from tests.unit.registry.conftest import SIG


def _store(
    server: str,
    bucket: str,
    cache: Path,
    cipher: ArtifactCipher | None = None,
    multipart_threshold: int = 16 << 20,
) -> S3ArtifactStore:
    return S3ArtifactStore(
        f"s3://{bucket}/team/models",
        LocalArtifactStore(cache, cipher),
        endpoint_url=server,
        multipart_threshold=multipart_threshold,
    )


def test_put_then_load_on_another_machine_goes_through_a_verified_cache(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    here = _store(s3_server, s3_bucket, tmp_path / "a")
    data = os.urandom(300_000)
    sha, size = here.put_bytes(data)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    obj = s3_client(s3_server).get_object(Bucket=s3_bucket, Key=f"team/models/{sha[:2]}/{sha[2:]}")
    assert obj["Body"].read() == data
    there = _store(s3_server, s3_bucket, tmp_path / "b")  # an empty cache: another machine
    assert there.exists(sha) and not there.cache.exists(sha)
    assert there.read_bytes(sha) == data
    assert there.path(sha) == there.location(sha) == there.cache.location(sha)
    assert read_artifact("m:1", there.location(sha), sha) == data  # what a replica does
    assert not list((tmp_path / "b").glob(".tmp-*"))


def test_put_is_idempotent_and_delete_removes_object_and_cache(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = _store(s3_server, s3_bucket, tmp_path)
    src = tmp_path / "m.onnx"
    src.write_bytes(b"model bytes")
    first = store.put_file(src)
    assert store.put_bytes(b"model bytes") == first
    with src.open("rb") as f:
        assert store.put_stream(f) == first
    listed = s3_client(s3_server).list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"team/models/{first[0][:2]}/{first[0][2:]}"]
    store.delete(first[0])
    assert not store.exists(first[0]) and not store.cache.exists(first[0])
    store.delete(first[0])  # a missing blob is not an error
    with pytest.raises(errors.NotFound):
        store.read_bytes(first[0])


def test_a_corrupted_object_is_refused_at_load_and_never_cached(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    sha, _ = _store(s3_server, s3_bucket, tmp_path / "a").put_bytes(b"the real model")
    s3_client(s3_server).put_object(
        Bucket=s3_bucket, Key=f"team/models/{sha[:2]}/{sha[2:]}", Body=b"something else"
    )
    fresh = _store(s3_server, s3_bucket, tmp_path / "b")
    for load in (fresh.read_bytes, fresh.path):
        with pytest.raises(errors.IntegrityError, match=f"artifact {sha} is corrupt"):
            load(sha)
    assert not fresh.cache.exists(sha) and not list((tmp_path / "b").rglob(".tmp-*"))
    # location() does not raise: the replica reads the path, finds nothing and reports it
    assert not fresh.location(sha).exists()


def test_a_corrupted_cache_copy_is_fetched_again(s3_server: str, s3_bucket: str, tmp_path: Path) -> None:
    store = _store(s3_server, s3_bucket, tmp_path)
    sha, _ = store.put_bytes(b"model")
    cached = store.cache.location(sha)
    os.chmod(cached, 0o644)
    cached.write_bytes(b"rot")
    assert store.read_bytes(sha) == b"model"


def test_encrypted_objects_hold_ciphertext_and_read_back(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    cipher = ArtifactCipher(os.urandom(32))
    sha, _ = _store(s3_server, s3_bucket, tmp_path / "a", cipher).put_bytes(b"secret model")
    body = s3_client(s3_server).get_object(Bucket=s3_bucket, Key=f"team/models/{sha[:2]}/{sha[2:]}")
    stored = body["Body"].read()
    assert is_encrypted(stored) and b"secret model" not in stored
    other = _store(s3_server, s3_bucket, tmp_path / "b", cipher)
    assert other.read_bytes(sha) == b"secret model"
    assert read_artifact("m:1", other.location(sha), sha, cipher) == b"secret model"
    with pytest.raises(errors.IntegrityError, match="no artifact key is set"):
        _store(s3_server, s3_bucket, tmp_path / "c").read_bytes(sha)


def test_large_artifacts_go_up_in_parts(s3_server: str, s3_bucket: str, tmp_path: Path) -> None:
    store = _store(s3_server, s3_bucket, tmp_path / "a", multipart_threshold=5 << 20)
    data = os.urandom(11 << 20)
    sha, _ = store.put_bytes(data)
    head = s3_client(s3_server).head_object(Bucket=s3_bucket, Key=store.key(sha))
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a 3-part upload
    assert _store(s3_server, s3_bucket, tmp_path / "b").read_bytes(sha) == data


def test_a_missing_bucket_is_one_clear_error(s3_server: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(errors.Unavailable, match=r"cannot upload artifact .* in s3://no-such-bucket"):
        _store(s3_server, "no-such-bucket", tmp_path).put_bytes(b"x")


def test_urls_other_than_s3_are_refused() -> None:
    assert parse_s3_url("s3://b") == ("b", "")
    assert parse_s3_url("s3://b/p/q/") == ("b", "p/q/")
    for bad in ("http://b/p", "s3:///p", "b/p"):
        with pytest.raises(errors.InvalidInput, match="is not s3://BUCKET"):
            parse_s3_url(bad)


def test_backup_and_restore_with_the_store_on_s3(s3_server: str, s3_bucket: str, tmp_path: Path) -> None:
    cipher = ArtifactCipher(os.urandom(32))
    source = _store(s3_server, s3_bucket, tmp_path / "cache-a", cipher)
    with Registry(f"sqlite:///{tmp_path / 'a.db'}", source) as reg:
        v = reg.register("m", b"onnx bytes", signature=SIG, framework="onnx")
        backup(reg, tmp_path / "b.tar.gz")
    s3_client(s3_server).create_bucket(Bucket=f"{s3_bucket}-new")
    target = _store(s3_server, f"{s3_bucket}-new", tmp_path / "cache-b", cipher)
    with Registry(f"sqlite:///{tmp_path / 'b.db'}", target) as reg:
        restore(reg, tmp_path / "b.tar.gz")
        restored = reg.resolve("m:1")
        assert restored.sha256 == v.sha256 and reg.artifact_bytes(restored) == b"onnx bytes"
    assert target.exists(v.sha256)
