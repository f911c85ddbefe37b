"""The inference log of a deployment: a sample of requests with their inputs and outputs, as JSON lines, for
evaluating a model later. Opt-in per deployment (``monitoring.inferenceLog``): the data is the user's own.

The request path only counts and, every ``sample_every``-th request, puts references to its arrays on a
bounded queue (dropped and counted when full); a thread encodes and appends them. Every replica of a
deployment writes the same file, ``inference.jsonl``, under an advisory lock; past ``max_bytes`` it is renamed
``inference.jsonl.1`` (the older ones shifted up to ``keep``, the oldest removed) and a new one is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger("conveyor.observe")
FILE = "inference.jsonl"
LOCK = ".lock"
QUEUE_SIZE = 1024

_Record = tuple[float, str, str, str, Mapping[str, Any], Mapping[str, Any]]


class InferenceLog:
    """Sampled requests of one model version, appended to ``directory / inference.jsonl`` by a thread."""

    def __init__(
        self,
        directory: Path,
        *,
        model: str,
        version: str,
        sample_every: int,
        max_bytes: int,
        keep: int,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if sample_every < 1 or max_bytes < 1 or keep < 0:
            raise ValueError("sample_every and max_bytes must be at least 1, keep at least 0")
        self.directory = directory
        self.model, self.version = model, version
        self.sample_every, self.max_bytes, self.keep = sample_every, max_bytes, keep
        self.written = 0
        self.dropped = 0
        self._countdown = 1
        self._queue: queue.Queue[_Record | None] = queue.Queue(queue_size)
        directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"conveyor-inference-log-{model}", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.directory / FILE

    def observe(self, request_id: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Called for every answered request: a countdown, and a queued record every ``sample_every``-th."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.sample_every
        try:
            self._queue.put_nowait((time.time(), request_id, self.model, self.version, inputs, outputs))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the thread (at most ``timeout_s``)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 256:
                    batch.append(self._queue.get_nowait())
            done = batch[-1] is None or None in batch
            lines = []
            for r in batch:
                if r is None:
                    continue
                try:
                    lines.append(_line(r))
                except (TypeError, orjson.JSONEncodeError):  # an output orjson cannot write: skip that one
                    self.dropped += 1
            if not lines:
                continue
            try:
                self._append(lines)
            except OSError as exc:  # a full disk or a removed directory: the serving goes on
                self.dropped += len(lines)
                log.warning("inference log %s: %s; %d records dropped", self.path, exc, len(lines))
            else:
                self.written += len(lines)

    def _append(self, lines: list[bytes]) -> None:
        """Append ``lines``, rotating before a line that would take the file past ``max_bytes`` (a line
        longer than that alone gets a file of its own)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other replicas append to and rotate the same files
            size = self.path.stat().st_size if self.path.exists() else 0
            chunk: list[bytes] = []
            for line in lines:
                if size and size + len(line) > self.max_bytes:
                    self._write(chunk)
                    chunk = []
                    self._rotate()
                    size = 0
                chunk.append(line)
                size += len(line)
            self._write(chunk)

    def _write(self, chunk: list[bytes]) -> None:
        if chunk:
            with open(self.path, "ab") as f:
                f.write(b"".join(chunk))

    def _rotate(self) -> None:
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return
        older = self.directory / f"{FILE}.{self.keep}"
        older.unlink(missing_ok=True)
        for i in range(self.keep - 1, 0, -1):
            src = self.directory / f"{FILE}.{i}"
            if src.exists():
                src.rename(self.directory / f"{FILE}.{i + 1}")
        self.path.rename(self.directory / f"{FILE}.1")


def _line(record: _Record) -> bytes:
    t, rid, model, version, inputs, outputs = record
    doc = {
        "time": t,
        "request_id": rid,
        "model": model,
        "version": version,
        "inputs": dict(inputs),
        "outputs": dict(outputs),
    }
    return orjson.dumps(doc, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def _default(value: Any) -> Any:
    """What orjson cannot write itself: non-contiguous or BYTES arrays, numpy scalars, bytes."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot write {type(value).__name__} to the inference log")
