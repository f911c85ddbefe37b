"""Ed25519 keypairs on disk, signatures bound to name, version and digest, the signing policy's reasons."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.security import signing

SHA = "a" * 64


def test_create_keypair_writes_a_private_key_only_its_owner_reads_and_a_public_key(tmp_path: Path) -> None:
    pub = signing.create_keypair(tmp_path / "keys", "alice")
    key_file = tmp_path / "keys" / "alice.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "keys" / "alice.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert len(pub.key_id) == 16 and int(pub.key_id, 16) >= 0
    assert signing.trusted_keys(tmp_path / "keys") == {pub.key_id: pub}


def test_a_key_name_taken_is_never_overwritten(tmp_path: Path) -> None:
    signing.create_keypair(tmp_path, "alice")
    before = (tmp_path / "alice.key").read_bytes()
    with pytest.raises(errors.Conflict, match="key 'alice' already exists"):
        signing.create_keypair(tmp_path, "alice")
    assert (tmp_path / "alice.key").read_bytes() == before


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65])
def test_bad_key_names_are_invalid_input(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.InvalidInput, match="invalid key name"):
        signing.create_keypair(tmp_path, name)


def test_a_signature_verifies_only_for_the_version_and_digest_it_was_made_for(tmp_path: Path) -> None:
    pub = signing.create_keypair(tmp_path, "k")
    private = signing.load_private_key(tmp_path, "k")
    sig = signing.sign(private, "iris", 3, SHA)
    assert sig.key_id == pub.key_id
    assert signing.verifies(pub.key, sig.signature, "iris", 3, SHA)
    assert not signing.verifies(pub.key, sig.signature, "iris", 4, SHA)
    assert not signing.verifies(pub.key, sig.signature, "other", 3, SHA)
    assert not signing.verifies(pub.key, sig.signature, "iris", 3, "b" * 64)
    assert not signing.verifies(pub.key, "not base64!", "iris", 3, SHA)


def test_the_policy_names_the_version_and_why_it_is_refused(tmp_path: Path) -> None:
    mine = signing.create_keypair(tmp_path / "trusted", "mine")
    signing.create_keypair(tmp_path / "other", "theirs")
    trusted = signing.trusted_keys(tmp_path / "trusted")
    good = signing.sign(signing.load_private_key(tmp_path / "trusted", "mine"), "m", 1, SHA)
    foreign = signing.sign(signing.load_private_key(tmp_path / "other", "theirs"), "m", 1, SHA)
    raw = bytearray(base64.b64decode(good.signature))
    raw[0] ^= 1
    tampered = signing.Signature(mine.key_id, base64.b64encode(bytes(raw)).decode())

    assert "model m:1 is not signed" in str(signing.policy_problem("m", 1, SHA, [], trusted))
    untrusted = signing.policy_problem("m", 1, SHA, [foreign], trusted)
    assert untrusted == f"model m:1 is signed only by untrusted key(s) {foreign.key_id} (requireSignedModels)"
    bad = signing.policy_problem("m", 1, SHA, [tampered], trusted)
    assert (
        bad == f"model m:1: the signature by key mine ({mine.key_id}) does not verify (requireSignedModels)"
    )
    assert signing.policy_problem("m", 1, SHA, [foreign, good], trusted) is None
    assert signing.policy_problem("m", 2, SHA, [good], trusted) is not None  # not moved to another version


def test_find_key_takes_the_only_key_or_asks_which(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="none"):
        signing.find_key(tmp_path, None)
    signing.create_keypair(tmp_path, "a")
    assert signing.find_key(tmp_path, None)[0] == "a"
    signing.create_keypair(tmp_path, "b")
    with pytest.raises(errors.InvalidInput, match=r"--key NAME.*a, b"):
        signing.find_key(tmp_path, None)
    with pytest.raises(errors.NotFound, match="signing key 'c' not found"):
        signing.find_key(tmp_path, "c")


def test_a_pub_file_that_is_not_a_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("hello")
    with pytest.raises(errors.InvalidInput, match=r"bad.pub is not a PEM public key"):
        signing.trusted_keys(tmp_path)
