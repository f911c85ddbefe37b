"""Reading the JSON-lines files of a home's processes: all of them merged by time, filtered, and followed.

Each file is in time order (one writer); ``.N`` rotations are older than ``.N-1`` and the current file. Lines
of different processes merge on their ``time`` field, which is fixed-width UTC and so sorts as a string.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from conveyor.observe.logfiles import SUFFIX, log_files

Line = tuple[str, bytes, dict[str, Any]]  # (time, the raw line, its fields)


@dataclass
class LogFilter:
    """Which lines to keep; every given condition must hold."""

    since: str | None = None  # an ISO time in the files' format (YYYY-MM-DDTHH:MM:SS.ffffffZ)
    request_id: str | None = None
    deployment: str | None = None
    components: frozenset[str] = field(default_factory=frozenset)
    _replica: re.Pattern[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.deployment is not None:
            # Replica ids read <deployment>-<template>-<6 hex> (targets/processes.py).
            self._replica = re.compile(rf"{re.escape(self.deployment)}-[^-]+-[0-9a-f]{{6}}")

    def keeps(self, line: Line) -> bool:
        time, _, doc = line
        if self.since is not None and time < self.since:
            return False
        if self.components and doc.get("component") not in self.components:
            return False
        if self.request_id is not None and doc.get("request_id") != self.request_id:
            return False
        if self.deployment is not None:
            replica = doc.get("replica")
            mine = (
                isinstance(replica, str)
                and self._replica is not None
                and bool(self._replica.fullmatch(replica))
            )
            if not mine and doc.get("model") != self.deployment and doc.get("deployment") != self.deployment:
                return False
        return True


def parse(raw: bytes) -> Line | None:
    """A line's (time, raw, fields); None for a line that is not a JSON object with a time (a torn write)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("time"), str):
        return None
    return doc["time"], raw.rstrip(b"\n"), doc


def _rotation(path: Path) -> int:
    tail = path.name.rsplit(SUFFIX, 1)[1]
    return int(tail[1:]) if tail[1:].isdigit() else 0


def _process_lines(paths: Iterable[Path]) -> Iterator[Line]:
    """One process's lines, oldest first: its highest rotation first, the current file last."""
    for path in sorted(paths, key=_rotation, reverse=True):
        with contextlib.suppress(OSError), open(path, "rb") as f:
            for raw in f:
                line = parse(raw)
                if line is not None:
                    yield line


def read_lines(directory: Path, keep: LogFilter | None = None) -> Iterator[Line]:
    """Every line of every process under ``directory``, merged by time, that ``keep`` keeps."""
    by_process: dict[str, list[Path]] = {}
    for path in log_files(directory):
        by_process.setdefault(path.name.split(SUFFIX)[0], []).append(path)
    merged = heapq.merge(*(_process_lines(paths) for paths in by_process.values()), key=lambda line: line[0])
    return (line for line in merged if keep is None or keep.keeps(line))


class Follower:
    """New lines of the current files (and of files that appear), as ``tail -F`` of them all: a rotated
    file is read to its end before the new one is opened."""

    def __init__(self, directory: Path, *, from_start: bool = False) -> None:
        self.directory = directory
        self._open: dict[Path, tuple[BinaryIO, bytes]] = {}  # file, and the partial last line read
        for path in self._current():
            self._add(path, at_end=not from_start)

    def _current(self) -> list[Path]:
        return [p for p in log_files(self.directory) if p.name.endswith(SUFFIX)]

    def _add(self, path: Path, *, at_end: bool) -> None:
        with contextlib.suppress(OSError):
            f = open(path, "rb")  # noqa: SIM115  # held until the file is rotated away or close()
            if at_end:
                f.seek(0, os.SEEK_END)
            self._open[path] = (f, b"")

    def poll(self) -> list[Line]:
        """Lines written since the last poll, in time order."""
        for path in self._current():
            if path not in self._open:
                self._add(path, at_end=False)  # a process that started meanwhile: all of its lines
        out: list[Line] = []
        for path in list(self._open):
            out += self._drain(path)
        out.sort(key=lambda line: line[0])
        return out

    def _drain(self, path: Path) -> list[Line]:
        f, partial = self._open[path]
        try:  # asked before reading: a writer that rotated has written all it will to the old file
            rotated = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
        except OSError:
            rotated = True
        *complete, partial = (partial + f.read()).split(b"\n")
        lines = [line for raw in complete if (line := parse(raw)) is not None]
        self._open[path] = (f, partial)
        if rotated:  # read to its end above; the name now holds a new file (or nothing yet)
            f.close()
            del self._open[path]
            self._add(path, at_end=False)
            if path in self._open:
                lines += self._drain(path)
        return lines

    def close(self) -> None:
        for f, _ in self._open.values():
            f.close()
        self._open.clear()
