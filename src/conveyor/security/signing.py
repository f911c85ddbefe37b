"""Ed25519 signatures of model versions: keypairs on disk, the signed message, and the signing policy.

A signature covers the model name, the version number and the artifact's SHA-256, so it cannot be moved to
another version or another artifact. A key is named by its id: the first 16 hex digits of the SHA-256 of
its raw 32-byte public key. Trusted keys are the ``*.pub`` files of one directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conveyor import errors

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DOMAIN = b"conveyor model signature v1\n"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key read from ``NAME.pub``."""

    name: str
    key_id: str
    key: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Signature:
    """One stored signature of a version: which key, the base64 signature."""

    key_id: str
    signature: str


def key_id(public: Ed25519PublicKey) -> str:
    """The key's fingerprint: SHA-256 of the raw public key, first 16 hex digits."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def check_key_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.InvalidInput(
            f"invalid key name {name!r}: letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


def create_keypair(directory: Path, name: str) -> PublicKey:
    """Write ``NAME.key`` (PKCS#8 PEM, mode 0600) and ``NAME.pub`` under ``directory``; Conflict if the
    name is taken (a key is never overwritten: signatures made with it would no longer verify)."""
    check_key_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{name}{PRIVATE_SUFFIX}"
    public_path = directory / f"{name}{PUBLIC_SUFFIX}"
    if private_path.exists() or public_path.exists():
        raise errors.Conflict(f"key {name!r} already exists in {directory}")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL with 0600 from the start: the private key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = private.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return PublicKey(name, key_id(public), public)


def load_private_key(directory: Path, name: str) -> Ed25519PrivateKey:
    """The private key ``NAME.key`` in ``directory`` (NotFound, or InvalidInput if it is not one)."""
    path = directory / f"{check_key_name(name)}{PRIVATE_SUFFIX}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise errors.NotFound(
            f"signing key {name!r} not found: no {path} (create one: conveyor keys create)"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise errors.InvalidInput(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise errors.InvalidInput(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> PublicKey:
    """The public key in ``path`` (``NAME.pub``); InvalidInput if it is not an Ed25519 PEM public key."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as e:
        raise errors.InvalidInput(f"{path} is not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise errors.InvalidInput(f"{path} is not an Ed25519 public key")
    return PublicKey(path.name[: -len(PUBLIC_SUFFIX)], key_id(key), key)


def trusted_keys(directory: Path) -> dict[str, PublicKey]:
    """The keys trusted to sign models: every ``*.pub`` in ``directory``, by key id (none if it is absent)."""
    if not directory.is_dir():
        return {}
    keys = [load_public_key(p) for p in sorted(directory.glob(f"*{PUBLIC_SUFFIX}"))]
    return {k.key_id: k for k in keys}


def find_key(directory: Path, name: str | None) -> tuple[str, Ed25519PrivateKey]:
    """The signing key ``name``, or the only private key in ``directory`` when ``name`` is None."""
    if name is None:
        names = sorted(p.name[: -len(PRIVATE_SUFFIX)] for p in directory.glob(f"*{PRIVATE_SUFFIX}"))
        if len(names) != 1:
            found = ", ".join(names) if names else "none (create one: conveyor keys create NAME)"
            raise errors.InvalidInput(
                f"say which key to sign with (--key NAME); keys in {directory}: {found}"
            )
        name = names[0]
    return name, load_private_key(directory, name)


def message(name: str, version: int | str, sha256: str) -> bytes:
    """What is signed: a domain tag, then model name, version and artifact digest, one per line."""
    return _DOMAIN + f"{name}\n{version}\n{sha256}\n".encode()


def sign(private: Ed25519PrivateKey, name: str, version: int | str, sha256: str) -> Signature:
    raw = private.sign(message(name, version, sha256))
    return Signature(key_id(private.public_key()), base64.b64encode(raw).decode("ascii"))


def verifies(public: Ed25519PublicKey, signature: str, name: str, version: int | str, sha256: str) -> bool:
    """Whether ``signature`` (base64) is ``public``'s signature of this version's message."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public.verify(raw, message(name, version, sha256))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def policy_problem(
    name: str,
    version: int | str,
    sha256: str,
    signatures: list[Signature],
    trusted: dict[str, PublicKey],
) -> str | None:
    """Why ``name:version`` may not run under requireSignedModels, or None if a trusted key's signature of
    it verifies. The reason names the version: unsigned, signed only by untrusted keys, or not verifying."""
    ref = f"{name}:{version}"
    if not signatures:
        return f"model {ref} is not signed (requireSignedModels; sign it: conveyor models sign {ref})"
    by_trusted = [s for s in signatures if s.key_id in trusted]
    if not by_trusted:
        ids = ", ".join(sorted(s.key_id for s in signatures))
        return f"model {ref} is signed only by untrusted key(s) {ids} (requireSignedModels)"
    for s in by_trusted:
        if verifies(trusted[s.key_id].key, s.signature, name, version, sha256):
            return None
    names = ", ".join(f"{trusted[s.key_id].name} ({s.key_id})" for s in by_trusted)
    return f"model {ref}: the signature by key {names} does not verify (requireSignedModels)"
