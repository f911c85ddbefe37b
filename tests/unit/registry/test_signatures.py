"""Registry.sign_version stores a signature per version and key; signature_problem applies the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import errors
from conveyor.registry import Registry
from conveyor.security import signing
from tests.unit.registry.conftest import SIG


def test_a_signed_version_passes_the_policy_and_lists_its_key(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("m", b"model bytes", signature=SIG, framework="onnx")
    key = signing.create_keypair(tmp_path / "keys", "ci")
    trusted = signing.trusted_keys(tmp_path / "keys")
    assert "model m:1 is not signed" in str(registry.signature_problem(v, trusted))
    info = registry.sign_version(v, signing.load_private_key(tmp_path / "keys", "ci"))
    assert (info.name, info.version, info.key_id, info.signed_by) == ("m", 1, key.key_id, "tester")
    assert registry.signature_problem(v, trusted) is None
    registry.sign_version(v, signing.load_private_key(tmp_path / "keys", "ci"))  # again: still one
    assert [s.key_id for s in registry.signatures.of_version("m", 1)] == [key.key_id]
    assert list(registry.signatures.of_model("m")) == [1]


def test_a_signature_is_not_valid_for_another_version(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.register("m", b"same bytes", signature=SIG, framework="onnx")
    v2 = registry.register("m", b"same bytes", signature=SIG, framework="onnx")
    signing.create_keypair(tmp_path, "ci")
    sig = registry.sign_version(v1, signing.load_private_key(tmp_path, "ci"))
    registry.signatures.add("m", 2, sig.signed)  # copied onto v2 by hand
    problem = registry.signature_problem(v2, signing.trusted_keys(tmp_path))
    assert problem is not None and "model m:2: the signature by key ci" in problem


def test_a_corrupt_artifact_is_never_signed(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("m", b"model bytes", signature=SIG, framework="onnx")
    blob = registry.artifact_location(v)
    blob.chmod(0o644)
    blob.write_bytes(b"other bytes")
    signing.create_keypair(tmp_path, "ci")
    with pytest.raises(errors.IntegrityError, match=r"model m:1: artifact .* is corrupt"):
        registry.sign_version(v, signing.load_private_key(tmp_path, "ci"))
    assert registry.signatures.of_version("m", 1) == []


def test_signing_a_missing_version_is_not_found(registry: Registry) -> None:
    with pytest.raises(errors.NotFound, match="version m:9 not found"):
        registry.signatures.of_version("m", 9)
