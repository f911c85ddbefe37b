"""Writing a file whole or not at all: a crash or a full disk never leaves half of one, nor a temp file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from conveyor import errors


@contextlib.contextmanager
def replacing(path: Path, what: str | None = None) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``path``; on success it is fsynced and renamed over ``path`` (readers see the
    old file or the new one), on any failure removed. A full disk raises DiskFull naming ``what`` (or
    ``path``), after the removal."""
    with errors.disk_full_as_error(what or str(path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
