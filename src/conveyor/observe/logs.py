"""Logging of every Conveyor server process: one stderr handler whose filter turns a burst of identical lines
into the first line and one "(N more in the last 10s)" summary per interval.

With both replicas of a deployment down, a gateway under load wrote 17,035 identical lines in 2.5 s: the
repeats buried everything else and cost more than the requests. Lines are identical when they share logger,
level and message template (``log.error("request %s failed: %s", ...)`` is one key whatever its arguments).
"""

from __future__ import annotations

import atexit
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from conveyor.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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
        if getattr(record, "repeat_summary", False):
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


def configure_logging(settings: Settings, level: str = "warning") -> RepeatFilter:
    """Install the process's one stderr handler on the root logger (uvicorn's loggers propagate to it: the
    servers pass ``log_config=None``) and start the thread that writes summaries. Call once, at start."""
    repeat_interval_s = settings.log_repeat_interval_s
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    repeats = RepeatFilter(repeat_interval_s)
    repeats.sink = handler
    handler.addFilter(repeats)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

    def flush_forever() -> None:
        while True:
            time.sleep(min(FLUSH_EVERY_S, repeat_interval_s))
            repeats.flush()

    threading.Thread(target=flush_forever, name="conveyor-log-summaries", daemon=True).start()
    atexit.register(repeats.flush, everything=True)
    return repeats
