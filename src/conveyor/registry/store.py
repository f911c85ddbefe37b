"""Content-addressed artifact store: blobs named by their SHA-256, written atomically, verified on every load.

``ArtifactStore`` is the interface; ``LocalArtifactStore`` keeps blobs under a folder as ``root/ab/cdef...``,
encrypted with AES-256-GCM when given a cipher (security/encryption.py; the digest stays the plaintext's).
S3-compatible object storage is registry/s3store.py, with a local store as its verified cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from conveyor import errors
from conveyor.digests import check_digest, verify
from conveyor.security.encryption import ArtifactCipher, is_encrypted, plaintext

__all__ = ["ArtifactStore", "LocalArtifactStore", "check_digest", "verify_file"]
_CHUNK = 1024 * 1024


class ArtifactStore(ABC):
    """Immutable blobs addressed by SHA-256. Every load verifies the digest (IntegrityError on mismatch)."""

    @abstractmethod
    def put_file(self, path: Path) -> tuple[str, int]:
        """Store the file's content; return (sha256, size). Idempotent for content already stored."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return (sha256, size). Idempotent for content already stored."""

    @abstractmethod
    def put_stream(self, src: IO[bytes]) -> tuple[str, int]:
        """Store what ``src`` reads until EOF; return (sha256, size). Idempotent for stored content."""

    @abstractmethod
    def read_bytes(self, sha256: str) -> bytes:
        """The verified content (NotFound if missing, IntegrityError if corrupt)."""

    @abstractmethod
    def path(self, sha256: str) -> Path:
        """The local file of the blob, verified (NotFound if missing, IntegrityError if corrupt). It holds
        the stored form: encrypted when the store encrypts; ``digests.read_artifact`` reads either form."""

    @abstractmethod
    def location(self, sha256: str) -> Path:
        """Where the blob lies, NOT verified (it may even be missing): for a reader that verifies the bytes it
        loads against the digest itself, as a replica process does (no window between check and load)."""

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored (not verified)."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; a missing blob is not an error."""


class LocalArtifactStore(ArtifactStore):
    """Blobs in a local folder, sharded by the first two hex digits of their digest."""

    def __init__(self, root: Path, cipher: ArtifactCipher | None = None) -> None:
        self.root = Path(root)
        self.cipher = cipher
        """Encrypts new blobs and decrypts encrypted ones; None: new blobs are plaintext."""

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def _blob(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def put_file(self, path: Path) -> tuple[str, int]:
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below, after the copy
        except FileNotFoundError:
            raise errors.NotFound(f"artifact file {path} does not exist") from None
        with src:
            return self.put_stream(src)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self._write(iter((bytes(data),)))

    def put_stream(self, src: IO[bytes]) -> tuple[str, int]:
        return self._write(iter(lambda: src.read(_CHUNK), b""))

    def _write(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        # A full disk is DiskFull, raised after the temp file is gone: a failed put leaves nothing behind.
        with errors.disk_full_as_error(f"an artifact to {self.root}"):
            if self.cipher is None:
                return self._write_atomically(chunks)
            # AES-GCM seals the whole content at once: held in memory, as every loader holds it anyway.
            data = b"".join(chunks)
            sha256 = hashlib.sha256(data).hexdigest()
            if self._blob(sha256).exists():
                return sha256, len(data)
            written, _ = self._write_atomically(iter((self.cipher.encrypt(data),)), sha256)
            return written, len(data)

    def _write_atomically(self, chunks: Iterable[bytes], name: str | None = None) -> tuple[str, int]:
        # The temp file lives under root, so os.replace is an atomic rename on one filesystem; readers
        # see either no blob or the whole blob, never a partial one.
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = name or digest.hexdigest()
            final = self._blob(sha256)
            if final.exists():
                tmp.unlink()  # content-addressed: the same bytes are already there
                return sha256, size
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return sha256, size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def read_bytes(self, sha256: str) -> bytes:
        blob = self._blob(sha256)
        try:
            data = blob.read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(f"artifact {sha256} not found in {self.root}") from None
        data = plaintext(data, self.cipher, f"artifact {sha256}")
        verify(f"artifact {sha256}", sha256, hashlib.sha256(data).hexdigest())
        return data

    def path(self, sha256: str) -> Path:
        blob = self._blob(sha256)
        try:
            verify_file(blob, sha256, self.cipher)
        except FileNotFoundError:
            raise errors.NotFound(f"artifact {sha256} not found in {self.root}") from None
        return blob

    def temp_file(self) -> Path:
        """A new empty file under ``root`` for ``admit`` (an atomic rename away from its place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        os.close(fd)
        return Path(name)

    def admit(self, tmp: Path, sha256: str) -> Path:
        """Move ``tmp`` (from ``temp_file``, holding a blob's stored form, as another store holds it) into
        place as ``sha256`` once it verifies; IntegrityError, and ``tmp`` removed, when it is not the blob."""
        try:
            verify_file(tmp, sha256, self.cipher)
            final = self._blob(sha256)
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return final
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def location(self, sha256: str) -> Path:
        return self._blob(sha256)

    def exists(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._blob(sha256).unlink()


def verify_file(blob: Path, sha256: str, cipher: ArtifactCipher | None) -> None:
    """IntegrityError unless the file holds the blob ``sha256`` in its stored form (plaintext, or encrypted
    and decrypted with ``cipher``); FileNotFoundError when it is missing."""
    digest = hashlib.sha256()
    with open(blob, "rb") as f:
        head = f.read(_CHUNK)
        if is_encrypted(head):  # an encrypted blob is sealed whole: read and decrypted at once
            data = plaintext(head + f.read(), cipher, f"artifact {sha256}")
            verify(f"artifact {sha256}", sha256, hashlib.sha256(data).hexdigest())
            return
        digest.update(head)
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    verify(f"artifact {sha256}", sha256, digest.hexdigest())


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
