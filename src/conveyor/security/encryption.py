"""Encryption at rest of artifact blobs: AES-256-GCM with one key, a small header naming the key.

A blob is ``MAGIC | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag``; the header is authenticated
(GCM associated data). The artifact's SHA-256 stays that of the plaintext, so content addressing and digest
checks do not change; a blob without the header is a plaintext one stored before encryption was turned on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conveyor import errors

MAGIC = b"CVYENC1\x00"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
_HOW = "set CONVEYOR_ARTIFACT_KEY or CONVEYOR_ARTIFACT_KEY_FILE"


class ArtifactCipher:
    """AES-256-GCM with one 32-byte key; ``key_id`` (hex) is a fingerprint of the key, safe to show."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise errors.InvalidInput(f"the artifact key must be 32 bytes (AES-256), got {len(key)}")
        self._aead = AESGCM(key)
        self._key_id = hashlib.sha256(b"conveyor artifact key\n" + key).digest()[:_KEY_ID_BYTES]
        self.key_id = self._key_id.hex()

    def __repr__(self) -> str:
        return f"ArtifactCipher(key_id={self.key_id})"

    def encrypt(self, plaintext: bytes) -> bytes:
        header = MAGIC + self._key_id + os.urandom(_NONCE_BYTES)
        return header + self._aead.encrypt(header[-_NONCE_BYTES:], plaintext, header)

    def decrypt(self, blob: bytes, what: str) -> bytes:
        """The plaintext of an encrypted ``blob``; IntegrityError naming ``what`` if another key encrypted
        it or the bytes were changed."""
        header, body = blob[:HEADER_BYTES], blob[HEADER_BYTES:]
        if len(header) < HEADER_BYTES:
            raise errors.IntegrityError(f"{what} is corrupt: its encryption header is truncated")
        blob_key = header[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES]
        if blob_key != self._key_id:
            raise errors.IntegrityError(
                f"{what} is encrypted with artifact key {blob_key.hex()}, but the key set is {self.key_id} "
                "(wrong CONVEYOR_ARTIFACT_KEY / CONVEYOR_ARTIFACT_KEY_FILE?)"
            )
        try:
            return self._aead.decrypt(header[-_NONCE_BYTES:], body, header)
        except InvalidTag:
            raise errors.IntegrityError(
                f"{what} is corrupt: its encrypted bytes do not authenticate (changed on disk)"
            ) from None


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def plaintext(blob: bytes, cipher: ArtifactCipher | None, what: str) -> bytes:
    """``blob`` as stored → its content: decrypted if encrypted (IntegrityError without the key), as is if
    it is a plaintext blob."""
    if not is_encrypted(blob):
        return blob
    if cipher is None:
        key = blob[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES].hex()
        raise errors.IntegrityError(
            f"{what} is encrypted (artifact key {key}) and no artifact key is set: {_HOW}"
        )
    return cipher.decrypt(blob, what)


def parse_key(text: str, source: str) -> bytes:
    """A key written as base64 of 32 bytes (``openssl rand -base64 32``); InvalidInput naming ``source``."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidInput(f"{source} is not base64 (expected base64 of 32 random bytes)") from None
    if len(key) != 32:
        raise errors.InvalidInput(f"{source} must be base64 of 32 bytes (AES-256), got {len(key)} bytes")
    return key


def cipher_from(key: str | None, key_file: Path | None) -> ArtifactCipher | None:
    """The cipher for the settings ``artifact_key`` (base64) or ``artifact_key_file``; None when neither is
    set (blobs are stored in plaintext). Both set is an error: which one is meant would be a guess."""
    if key and key_file is not None:
        raise errors.InvalidInput("set CONVEYOR_ARTIFACT_KEY or CONVEYOR_ARTIFACT_KEY_FILE, not both")
    if key:
        return ArtifactCipher(parse_key(key, "CONVEYOR_ARTIFACT_KEY"))
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise errors.InvalidInput(f"cannot read the artifact key file {key_file}: {e}") from None
        return ArtifactCipher(parse_key(text, f"artifact key file {key_file}"))
    return None
