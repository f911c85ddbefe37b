"""AES-256-GCM blobs: a header naming the key, one clear error without it or with another, tampering seen."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.security.encryption import HEADER_BYTES, ArtifactCipher, cipher_from, is_encrypted, plaintext

KEY = os.urandom(32)


def test_a_blob_round_trips_and_hides_its_content() -> None:
    cipher = ArtifactCipher(KEY)
    blob = cipher.encrypt(b"the model bytes")
    assert is_encrypted(blob) and b"the model bytes" not in blob
    assert len(blob) == HEADER_BYTES + len(b"the model bytes") + 16
    assert plaintext(blob, cipher, "artifact x") == b"the model bytes"
    assert cipher.encrypt(b"same") != cipher.encrypt(b"same")  # a fresh nonce every time


def test_a_plaintext_blob_is_read_as_is_with_or_without_a_key() -> None:
    assert plaintext(b"\x08\x07old", ArtifactCipher(KEY), "a") == b"\x08\x07old"
    assert plaintext(b"\x08\x07old", None, "a") == b"\x08\x07old"


def test_without_the_key_the_error_says_which_key_and_how_to_set_it() -> None:
    cipher = ArtifactCipher(KEY)
    with pytest.raises(errors.IntegrityError) as info:
        plaintext(cipher.encrypt(b"m"), None, "artifact x")
    assert str(info.value) == (
        f"artifact x is encrypted (artifact key {cipher.key_id}) and no artifact key is set: "
        "set CONVEYOR_ARTIFACT_KEY or CONVEYOR_ARTIFACT_KEY_FILE"
    )


def test_another_key_is_named_as_the_wrong_key_not_garbage() -> None:
    blob = ArtifactCipher(KEY).encrypt(b"m")
    other = ArtifactCipher(os.urandom(32))
    with pytest.raises(errors.IntegrityError, match=rf"but the key set is {other.key_id}"):
        plaintext(blob, other, "artifact x")


def test_a_changed_byte_is_refused_as_corrupt() -> None:
    cipher = ArtifactCipher(KEY)
    blob = bytearray(cipher.encrypt(b"model"))
    blob[-1] ^= 1
    with pytest.raises(errors.IntegrityError, match=r"artifact x is corrupt: .* do not authenticate"):
        plaintext(bytes(blob), cipher, "artifact x")


def test_the_key_comes_from_base64_or_a_file_and_bad_keys_are_named(tmp_path: Path) -> None:
    text = base64.b64encode(KEY).decode()
    assert cipher_from(None, None) is None
    assert cipher_from(text, None).key_id == ArtifactCipher(KEY).key_id  # type: ignore[union-attr]
    (tmp_path / "k").write_text(text + "\n")
    assert cipher_from(None, tmp_path / "k").key_id == ArtifactCipher(KEY).key_id  # type: ignore[union-attr]
    with pytest.raises(errors.InvalidInput, match="CONVEYOR_ARTIFACT_KEY must be base64 of 32 bytes"):
        cipher_from(base64.b64encode(b"short").decode(), None)
    with pytest.raises(errors.InvalidInput, match="is not base64"):
        cipher_from("not*base64", None)
    with pytest.raises(errors.InvalidInput, match="not both"):
        cipher_from(text, tmp_path / "k")
    with pytest.raises(errors.InvalidInput, match="cannot read the artifact key file"):
        cipher_from(None, tmp_path / "missing")
