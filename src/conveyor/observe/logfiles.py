"""The JSON-lines files of a home's processes: ``<log dir>/<component>[-<id>].jsonl``, rotated, bounded.

One writer per file (the component and its id name the process: ``control``, ``gateway-8080``,
``replica-<replica id>``, ``serve-8000``), so rotation needs no lock between processes. A file holds at most
``max_bytes``; on reaching it the file becomes ``.1`` (``.1`` becomes ``.2``, ...) and ``backups`` of them
are kept: a process never holds more than ``(backups + 1) * max_bytes`` on disk. Replica ids are new at each
start: the files of replicas beyond the newest ``KEEP_REPLICA_FILES`` are removed when a replica starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import BinaryIO

SUFFIX = ".jsonl"
KEEP_REPLICA_FILES = 100
BUFFER_BYTES = 64 * 1024


def file_name(component: str, instance: str | None = None) -> str:
    return f"{component}-{instance}{SUFFIX}" if instance else f"{component}{SUFFIX}"


class JsonLinesFile(logging.Handler):
    """Appends formatted records to ``path``, rotating it at ``max_bytes``.

    Lines are buffered and written when the buffer fills, at ``flush()`` (the logging thread calls it every
    second, and at exit) and at once for a record of level ERROR or above: a sampled access log costs a
    string append per request rather than a system call, and a line that explains a crash is on disk
    before the crash.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.backups = max(0, backups)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = self._open()

    def _open(self) -> BinaryIO:
        f = open(self.path, "ab", buffering=BUFFER_BYTES)  # noqa: SIM115  # held open until close()
        self._size = f.tell()
        return f

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode()
            if self._file is None:
                return
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
            if record.levelno >= logging.ERROR:
                self._file.flush()
        except Exception:
            self.handleError(record)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        for n in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
            with contextlib.suppress(FileNotFoundError):
                os.replace(newer, older)
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._file = self._open()

    def flush(self) -> None:
        with self.lock if self.lock is not None else contextlib.nullcontext():
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.flush()

    def close(self) -> None:
        self.flush()
        with self.lock if self.lock is not None else contextlib.nullcontext():
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
        super().close()


def log_files(directory: Path) -> list[Path]:
    """Every JSON-lines file of the directory, rotated ones included."""
    try:
        return sorted(p for p in directory.iterdir() if SUFFIX in p.name and p.is_file())
    except OSError:
        return []


def prune_replica_files(
    directory: Path, keep: int = KEEP_REPLICA_FILES, *, spare: Path | None = None
) -> None:
    """Remove the files of all but the ``keep`` most recently written replicas (never ``spare``)."""
    by_replica: dict[str, float] = {}
    for p in directory.glob(f"replica-*{SUFFIX}*"):
        base = p.name.split(SUFFIX)[0]
        with contextlib.suppress(OSError):
            by_replica[base] = max(by_replica.get(base, 0.0), p.stat().st_mtime)
    old = sorted(by_replica, key=by_replica.__getitem__)[: max(0, len(by_replica) - keep)]
    for base in old:
        for p in directory.glob(f"{base}{SUFFIX}*"):
            if p != spare:
                with contextlib.suppress(OSError):
                    p.unlink()
