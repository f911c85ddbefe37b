"""Logging of every Conveyor server process: text on stderr for the terminal, JSON lines in a file of the
home for ``conveyor logs`` (observe/logformat.py, observe/logfiles.py), both behind one filter that turns a
burst of identical lines into the first line and one "(N more in the last 10s)" summary per interval.

With both replicas of a deployment down, a gateway under load wrote 17,035 identical lines in 2.5 s: the
repeats buried everything else and cost more than the requests. Lines are identical when they share logger,
level and message template (``log.error("request %s failed: %s", ...)`` is one key whatever its arguments).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from conveyor.observe import trace
from conveyor.observe.logfiles import JsonLinesFile, file_name, prune_replica_files
from conveyor.observe.logformat import ACCESS_LOGGER, configure_structlog, formatter
from conveyor.settings import Settings

# Libraries that log every call they make at INFO (httpx: the gateway's load reports, the control plane's
# scrapes): their lines would bury Conveyor's own in the files.
QUIET_LOGGERS = ("httpx", "httpcore")
MAX_KEYS = 1024  # distinct templates tracked at once; the oldest is summarized and dropped beyond it
FLUSH_EVERY_S = 1.0  # how late a summary may come after its interval ends

Key = tuple[str, int, str]


@dataclass(slots=True)
class _Window:
    start: float
    suppressed: int = 0
    last: str = ""  # the newest suppressed line, formatted: no arguments or tracebacks kept alive
    pathname: str = ""
    lineno: int = 0


class RepeatFilter(logging.Filter):
    """Passes the first record of a (logger, level, template) key, counts the repeats within ``interval_s``,
    then ``flush`` writes one summary line with the count to ``sink``. Memory: ``max_keys`` windows."""

    def __init__(self, interval_s: float, *, max_keys: int = MAX_KEYS) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.sink: logging.Handler | None = None  # where summaries go: the handler this filter is on
        self._windows: OrderedDict[Key, _Window] = OrderedDict()  # oldest window first
        self._lock = threading.Lock()

    @property
    def tracked(self) -> int:
        """Keys with an open window (at most ``max_keys``)."""
        return len(self._windows)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ACCESS_LOGGER or getattr(record, "repeat_summary", False):
            return True
        key = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else repr(record.msg))
        now = time.monotonic()
        with self._lock:
            due = self._take_due(now)
            window = self._windows.get(key)
            if window is not None:
                window.suppressed += 1
                window.last = record.getMessage()
                window.pathname, window.lineno = record.pathname, record.lineno
            else:
                if len(self._windows) >= self.max_keys:
                    due.append(self._windows.popitem(last=False))
                self._windows[key] = _Window(now)
        self._emit(due)
        return window is None

    def flush(self, *, everything: bool = False) -> None:
        """Summarize every window whose interval is over (every second, from the flusher thread), or every
        window (at exit, so a burst just before it is still counted)."""
        with self._lock:
            due = self._take_due(math.inf if everything else time.monotonic())
        self._emit(due)

    def _take_due(self, now: float) -> list[tuple[Key, _Window]]:
        due = []
        while self._windows:
            window = next(iter(self._windows.values()))
            if now - window.start < self.interval_s:
                break
            due.append(self._windows.popitem(last=False))
        return due

    def _emit(self, due: list[tuple[Key, _Window]]) -> None:
        for (name, level, _), window in due:
            if window.suppressed == 0 or self.sink is None:
                continue
            msg = f"{window.last} ({window.suppressed} more in the last {self.interval_s:g}s)"
            record = logging.LogRecord(name, level, window.pathname, window.lineno, msg, None, None)
            record.repeat_summary = True
            self.sink.handle(record)


class _Fanout(logging.Handler):
    """The one handler on the root logger: its repeat filter sees each record once, then the record (or a
    summary) goes to each output handler, which applies its own level."""

    def __init__(self, outputs: list[logging.Handler]) -> None:
        super().__init__()
        self.outputs = outputs

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        for out in self.outputs:
            if record.levelno >= out.level and not (record.name == ACCESS_LOGGER and out.name == "stderr"):
                out.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        raise NotImplementedError

    def flush(self) -> None:
        for out in self.outputs:
            with contextlib.suppress(OSError, ValueError):  # a stream closed under us (at exit, in tests)
                out.flush()


def configure_logging(
    settings: Settings,
    level: str = "warning",
    *,
    component: str | None = None,
    instance: str | None = None,
) -> RepeatFilter:
    """Install the process's logging on the root logger (uvicorn's loggers propagate to it: the servers
    pass ``log_config=None``) and start the thread that writes summaries and flushes the file. Call once.

    ``level`` is the terminal's (stderr, in ``settings.log_format``). With a ``component`` (control,
    gateway, replica, serve) the process also writes JSON lines at ``settings.log_level`` to
    ``<log dir>/<component>[-<instance>].jsonl``; a replica's ``instance`` is its replica id."""
    repeat_interval_s = settings.log_repeat_interval_s
    replica = instance if component == "replica" else None
    stderr = logging.StreamHandler(sys.stderr)
    stderr.name = "stderr"
    stderr.setLevel(level.upper())
    stderr.setFormatter(formatter(settings.log_format, component or "cli", replica))
    outputs: list[logging.Handler] = [stderr]
    if component is not None and settings.log_to_file:
        directory = settings.effective_log_dir
        path = directory / file_name(component, instance)
        if component == "replica":
            prune_replica_files(directory, spare=path)
        try:
            file = JsonLinesFile(
                path, max_bytes=settings.log_file_max_bytes, backups=settings.log_file_backups
            )
        except OSError as exc:  # a read-only or full home: the process still serves, and says why
            print(f"warning: cannot write the log file {path}: {exc.strerror or exc}", file=sys.stderr)
        else:
            file.setLevel(settings.log_level.upper())
            file.setFormatter(formatter("json", component, replica))
            outputs.append(file)
    handler = _Fanout(outputs)
    repeats = RepeatFilter(repeat_interval_s)
    repeats.sink = handler
    handler.addFilter(repeats)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(out.level for out in outputs))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    configure_structlog()
    trace.set_sample_rate(settings.access_log_sample)

    def flush_forever() -> None:
        while True:
            time.sleep(min(FLUSH_EVERY_S, repeat_interval_s))
            repeats.flush()
            handler.flush()

    threading.Thread(target=flush_forever, name="conveyor-log-summaries", daemon=True).start()
    atexit.register(handler.flush)
    atexit.register(repeats.flush, everything=True)  # atexit runs it first: its summaries, then the flush
    return repeats
