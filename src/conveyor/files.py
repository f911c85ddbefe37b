"""Writing a file whole or not at all: a crash or a full disk never leaves half of one, nor a temp file; and
the folder rule of commands that write a folder of files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
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


def check_output_folder(
    out: Path, force: bool, owned: Callable[[Path], set[str] | None], what: str, short: str
) -> None:
    """``out`` may be written: it does not exist, is empty, or (with ``force``) holds ``what`` and nothing
    else, which the caller replaces. ``owned`` gives the names in a folder that ``what`` owns, None when the
    folder holds none. Any other folder is refused, so ``--force`` never deletes someone else's files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise errors.InvalidInput(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    ours = owned(out)
    if ours is None:
        raise errors.Conflict(f"{out} is not empty and not {what}: choose a new or empty folder")
    if not force:
        raise errors.Conflict(f"{out} already holds {what}: --force replaces it")
    others = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if others:
        raise errors.Conflict(
            f"{out} holds {what} and also {', '.join(others)}: --force replaces only {short}'s own "
            "files; move those first"
        )
