"""Downloading a version's artifact so that a cut link costs only what was not yet received (docs/edge.md).

Bytes accumulate in the cache's partial file; the next attempt asks ``Range: bytes=HAVE-`` with ``If-Range``
set to the artifact's digest (a control plane serving other bytes under that path answers 200 with the whole
file instead, and the partial file starts over). Nothing downloaded is used until the whole file's SHA-256
is the digest the control plane announced; a file that is not is removed and the download refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from conveyor import errors
from conveyor.edge.agent.poller import error_of

log = logging.getLogger("conveyor.edge")


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    resumed_from: int
    """Bytes already on disk when this attempt began (0: a fresh download)."""


async def download(
    client: httpx.AsyncClient, path: str, partial: Path, sha256: str, size: int, label: str
) -> Downloaded:
    """Fetch ``path`` into ``partial`` (resuming what it holds) and verify it against ``sha256``.

    ``Unavailable`` when the transfer stopped short (the partial file stays, for the next attempt);
    ``IntegrityError`` when the complete file is not the artifact (the partial file is removed).
    """
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    resumed_from = have
    if have < size:
        headers = {"range": f"bytes={have}-", "if-range": f'"{sha256}"'} if have else {}
        try:
            async with client.stream("GET", path, headers=headers) as response:
                if response.status_code == 416:  # what we hold is not a prefix the server knows: start over
                    partial.unlink(missing_ok=True)
                    raise errors.Unavailable(f"downloading {label}: the resume was refused; starting over")
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response, f"downloading {label}")
                if response.status_code == 206 and not _starts_at(response, have):
                    partial.unlink(missing_ok=True)
                    raise errors.Unavailable(
                        f"downloading {label}: the range came back misplaced; starting over"
                    )
                if response.status_code != 206:
                    have = resumed_from = 0  # the whole file came back: write it from the start
                mode = "ab" if have else "wb"
                with partial.open(mode) as f:
                    async for chunk in response.aiter_bytes():  # as they arrive: a cut loses none
                        have += len(chunk)
                        if have > size:
                            raise errors.IntegrityError(
                                f"downloading {label}: the control plane sent more than its {size} bytes"
                            )
                        f.write(chunk)
        except httpx.HTTPError as exc:
            got = partial.stat().st_size if partial.exists() else 0
            raise errors.Unavailable(
                f"downloading {label}: the transfer stopped at {got} of {size} bytes "
                f"({exc or type(exc).__name__}); it resumes from there"
            ) from None
        except errors.IntegrityError:
            partial.unlink(missing_ok=True)
            raise
    got = partial.stat().st_size
    if got < size:
        raise errors.Unavailable(f"downloading {label}: {got} of {size} bytes arrived; it resumes from there")
    actual = await asyncio.to_thread(_sha256, partial)  # not on the loop that serves requests
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise errors.IntegrityError(
            f"refused {label}: its download has SHA-256 {actual}, not the digest {sha256} the control plane "
            "announced (corrupted in transit or at rest); kept the version served"
        )
    if resumed_from:
        log.info("download of %s resumed at byte %d of %d", label, resumed_from, size)
    return Downloaded(partial, resumed_from)


def _starts_at(response: httpx.Response, offset: int) -> bool:
    """Whether a 206's ``Content-Range: bytes START-END/TOTAL`` starts where the partial file ends."""
    value = response.headers.get("content-range", "")
    unit, _, rest = value.partition(" ")
    start = rest.partition("-")[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
