"""The artifact store on S3-compatible object storage (``CONVEYOR_ARTIFACTS_URL=s3://bucket/prefix``).

Blobs are objects ``prefix/ab/cdef...`` holding the same stored form as a local store's files (encrypted when
a cipher is set). Replicas load from a path, so every load goes through a local ``LocalArtifactStore`` under
the home as a cache: an object is downloaded to a temporary file, verified against its digest and renamed
into the cache, so a corrupt object is refused at load (IntegrityError) and never reaches the cache.
boto3 is imported here only (the ``s3`` extra); credentials come from boto3's own chain (AWS_* variables,
~/.aws, an instance role).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from conveyor import errors
from conveyor.digests import check_digest
from conveyor.registry.store import ArtifactStore, LocalArtifactStore

__all__ = ["S3ArtifactStore", "parse_s3_url"]
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
    ) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache = cache
        """Where loads land, verified; it holds the cipher, so encryption works as for a local store."""
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
        if self.exists(sha256):  # content-addressed: the same bytes are already there
            return stored
        blob = self.cache.path(sha256)  # what goes up is verified first (a cached copy may predate this put)
        with self._errors(f"upload artifact {sha256}"):
            self._client.upload_file(str(blob), self.bucket, self.key(sha256), Config=self._transfer)
        return stored

    # -- loads: down into the cache, verified before the rename ------------------------------------------

    def read_bytes(self, sha256: str) -> bytes:
        self.path(sha256)
        return self.cache.read_bytes(sha256)

    def path(self, sha256: str) -> Path:
        if self.cache.exists(sha256):
            try:
                return self.cache.path(sha256)
            except errors.IntegrityError:  # the local copy went bad: it is only a cache, fetch it again
                self.cache.delete(sha256)
        return self._download(sha256)

    def location(self, sha256: str) -> Path:
        # A replica verifies what it loads; here the object only has to be in the cache (NOT verified
        # again when it already is). Whatever fails is the replica's to report: the path may be missing.
        if not self.cache.exists(sha256):
            with contextlib.suppress(errors.ConveyorError):
                self._download(sha256)
        return self.cache.location(sha256)

    def _download(self, sha256: str) -> Path:
        tmp = self.cache.temp_file()
        try:
            with self._errors(f"download artifact {sha256}"):
                self._client.download_file(self.bucket, self.key(sha256), str(tmp), Config=self._transfer)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.cache.admit(tmp, sha256)  # IntegrityError (and nothing cached) for a corrupt object

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
