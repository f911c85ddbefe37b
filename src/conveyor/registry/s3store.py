"""The artifact store on S3-compatible object storage (``CONVEYOR_ARTIFACTS_URL=s3://bucket/prefix``).

Blobs are objects ``prefix/ab/cdef...`` holding the same stored form as a local store's files (encrypted when
a cipher is set). Replicas load from a path, so every load goes through a local ``LocalArtifactStore`` under
the home as a cache: an object is downloaded to a temporary file, verified against its digest and renamed
into the cache, so a corrupt object is refused at load (IntegrityError) and never reaches the cache. The
cache is bounded: least recently used artifacts go first, never one used within an idle window (a replica
may be about to load it). boto3 is imported here only (the ``s3`` extra); credentials come from boto3's
own chain (AWS_* variables, ~/.aws, an instance role).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from conveyor import errors
from conveyor.digests import check_digest
from conveyor.registry.store import ArtifactStore, LocalArtifactStore

__all__ = ["S3ArtifactStore", "parse_s3_url"]
log = logging.getLogger("conveyor.registry.s3store")
CACHE_BYTES = 10240 << 20
"""The cache's bound by default (CONVEYOR_ARTIFACT_CACHE_MB)."""
CACHE_IDLE_S = 600.0
"""An artifact used this recently is never evicted (CONVEYOR_ARTIFACT_CACHE_IDLE_S)."""
MULTIPART_THRESHOLD = 16 * 1024 * 1024
"""Objects at least this big go up as a multipart upload (boto3's transfer manager, parts in parallel)."""
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/"); InvalidInput for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise errors.InvalidInput(f"artifacts URL {url!r} is not s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3ArtifactStore(ArtifactStore):
    """Blobs as objects in one bucket under a prefix, loaded through a verified local cache."""

    def __init__(
        self,
        url: str,
        cache: LocalArtifactStore,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        cache_bytes: int = CACHE_BYTES,
        cache_idle_s: float = CACHE_IDLE_S,
    ) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache = cache
        """Where loads land, verified; it holds the cipher, so encryption works as for a local store."""
        self.cache_bytes = cache_bytes
        """The most the cache keeps, in bytes (as stored: encrypted artifacts count their ciphertext)."""
        self.cache_idle_s = cache_idle_s
        """An artifact used within this many seconds stays (the file's mtime is when it was last used)."""
        self.evicted = 0
        """Artifacts this store removed from the cache."""
        self._pins: Counter[str] = Counter()
        """Artifacts this process is reading, verifying or downloading now: never evicted meanwhile."""
        self._pins_lock = threading.Lock()
        self._over = False
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
        except ImportError:
            raise errors.InvalidInput(
                f"artifacts URL {url!r} needs boto3: pip install 'conveyor[s3]'"
            ) from None
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=max(multipart_threshold, 5 << 20)
        )

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.url!r})"

    def key(self, sha256: str) -> str:
        check_digest(sha256)
        return f"{self.prefix}{sha256[:2]}/{sha256[2:]}"

    # -- writes: into the cache (hashing, encrypting), then up unless the object is there ----------------

    def put_file(self, path: Path) -> tuple[str, int]:
        return self._upload(self.cache.put_file(path))

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self._upload(self.cache.put_bytes(data))

    def put_stream(self, src: IO[bytes]) -> tuple[str, int]:
        return self._upload(self.cache.put_stream(src))

    def _upload(self, stored: tuple[str, int]) -> tuple[str, int]:
        sha256 = stored[0]
        with self._pinned(sha256):
            self._used(sha256)  # the same bytes put again: cached long ago, used now
            if not self.exists(sha256):  # content-addressed: the same bytes may be there already
                blob = self.cache.path(sha256)  # verified first (a cached copy may predate this put)
                with self._errors(f"upload artifact {sha256}"):
                    self._client.upload_file(str(blob), self.bucket, self.key(sha256), Config=self._transfer)
            self._bound()
        return stored

    # -- loads: down into the cache, verified before the rename ------------------------------------------

    def read_bytes(self, sha256: str) -> bytes:
        with self._pinned(sha256):
            self.path(sha256)
            return self.cache.read_bytes(sha256)

    def path(self, sha256: str) -> Path:
        with self._pinned(sha256):
            if self.cache.exists(sha256):
                self._used(sha256)
                try:
                    return self.cache.path(sha256)
                except errors.IntegrityError:  # the local copy went bad: it is only a cache, fetch it again
                    self.cache.delete(sha256)
            return self._download(sha256)

    def location(self, sha256: str) -> Path:
        # A replica verifies what it loads; here the object only has to be in the cache (NOT verified
        # again when it already is). Whatever fails is the replica's to report: the path may be missing.
        # Either way it is used now: whoever asked is about to load it, so it stays for cache_idle_s.
        if self.cache.exists(sha256):
            self._used(sha256)
        else:
            with contextlib.suppress(errors.ConveyorError):
                self._download(sha256)
        return self.cache.location(sha256)

    def _download(self, sha256: str) -> Path:
        with self._pinned(sha256):
            tmp = self.cache.temp_file()
            try:
                with self._errors(f"download artifact {sha256}"):
                    self._client.download_file(self.bucket, self.key(sha256), str(tmp), Config=self._transfer)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            blob = self.cache.admit(tmp, sha256)  # IntegrityError (and nothing cached) for a corrupt object
            self._used(sha256)  # admitted with the download's start as its mtime
            self._bound()
            return blob

    # -- the cache's bound ----------------------------------------------------------------------------------

    def _used(self, sha256: str) -> None:
        """The artifact is used now: its file's mtime says so to every process sharing the cache."""
        with contextlib.suppress(OSError):  # gone meanwhile: it is downloaded again when next needed
            os.utime(self.cache.location(sha256))

    @contextlib.contextmanager
    def _pinned(self, sha256: str) -> Iterator[None]:
        with self._pins_lock:
            self._pins[sha256] += 1
        try:
            yield
        finally:
            with self._pins_lock:
                self._pins[sha256] -= 1
                if not self._pins[sha256]:
                    del self._pins[sha256]

    def _bound(self) -> None:
        """Remove the least recently used artifacts until the cache holds at most ``cache_bytes``: never one
        pinned here, nor one used within ``cache_idle_s`` (by any process: another may be loading it)."""
        with self._pins_lock:
            pinned = set(self._pins)
        cached = list(cached_blobs(self.cache.root))
        chosen = evictable(cached, self.cache_bytes, time.time() - self.cache_idle_s, pinned)
        for blob in chosen:
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                blob.path.unlink()
            self.evicted += 1
            log.info(
                "artifact %s (%d bytes) evicted from the cache %s", blob.sha256, blob.size, self.cache.root
            )
        held = sum(b.size for b in cached) - sum(b.size for b in chosen)
        over = held > self.cache_bytes
        if over and not self._over:  # said once per time over, not at every download
            log.warning(
                "the artifact cache %s holds %.1f MiB, over its %.1f MiB: every artifact in it is in use "
                "or was used within %gs (CONVEYOR_ARTIFACT_CACHE_MB, CONVEYOR_ARTIFACT_CACHE_IDLE_S)",
                self.cache.root,
                held / (1 << 20),
                self.cache_bytes / (1 << 20),
                self.cache_idle_s,
            )
        self._over = over

    def exists(self, sha256: str) -> bool:
        try:
            with self._errors(f"look up artifact {sha256}"):
                self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except errors.NotFound:
            return False
        return True

    def delete(self, sha256: str) -> None:
        with self._errors(f"delete artifact {sha256}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        self.cache.delete(sha256)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Any:
        """botocore's errors as the registry's: a missing object NotFound, anything else Unavailable."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            error = e.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _NOT_FOUND:
                raise errors.NotFound(f"artifact not found in {self.url}: cannot {what}") from None
            detail = error.get("Message") or code
            raise errors.Unavailable(f"cannot {what} in {self.url}: {detail}") from None
        except (BotoCoreError, Boto3Error) as e:  # S3UploadFailedError wraps a ClientError's text
            raise errors.Unavailable(f"cannot {what} in {self.url}: {e}") from None


@dataclass(frozen=True, slots=True)
class CachedBlob:
    sha256: str
    path: Path
    size: int
    used: float
    """When it was last used (its mtime, wall-clock seconds)."""


def cached_blobs(root: Path) -> Iterator[CachedBlob]:
    """The artifacts in a cache folder (``AB/CDEF…``; temporary files of downloads under way are not)."""
    with contextlib.suppress(FileNotFoundError):
        for shard in root.iterdir():
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for blob in shard.iterdir():
                with contextlib.suppress(FileNotFoundError):  # evicted by another process meanwhile
                    st = blob.stat()
                    yield CachedBlob(shard.name + blob.name, blob, st.st_size, st.st_mtime)


def evictable(
    cached: Iterable[CachedBlob], limit: int, used_before: float, pinned: set[str]
) -> list[CachedBlob]:
    """Which artifacts to remove, least recently used first, for the rest to fit in ``limit`` bytes: only
    those last used before ``used_before`` and not ``pinned`` (all of them may not be enough)."""
    ordered = sorted(cached, key=lambda b: b.used)
    total = sum(b.size for b in ordered)
    chosen: list[CachedBlob] = []
    for blob in ordered:
        if total <= limit or blob.used >= used_before:
            break  # sorted: every later one was used more recently
        if blob.sha256 not in pinned:
            chosen.append(blob)
            total -= blob.size
    return chosen
