"""The repeat filter: the first line of a kind passes, repeats are counted, one summary per interval."""

from __future__ import annotations

import logging
import time

from conveyor.observe.logs import RepeatFilter


class Collect(logging.Handler):
    def __init__(self, repeats: RepeatFilter) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.addFilter(repeats)
        repeats.sink = self

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def logger_with(repeats: RepeatFilter) -> tuple[logging.Logger, Collect]:
    handler = Collect(repeats)
    log = logging.getLogger(f"test.repeats.{id(handler)}")
    log.propagate = False
    log.addHandler(handler)
    return log, handler


def test_a_burst_is_one_line_then_one_summary_with_its_count() -> None:
    repeats = RepeatFilter(0.2)
    log, out = logger_with(repeats)
    for i in range(1000):
        log.error("request %s failed: %s", i, "no healthy replica")
    log.warning("another kind of line")
    assert out.lines == ["ERROR request 0 failed: no healthy replica", "WARNING another kind of line"]
    time.sleep(0.25)
    repeats.flush()
    assert out.lines[2:] == ["ERROR request 999 failed: no healthy replica (999 more in the last 0.2s)"]
    log.error("request %s failed: %s", 1000, "no healthy replica")  # a new interval: passes again
    assert out.lines[3:] == ["ERROR request 1000 failed: no healthy replica"]


def test_a_line_that_did_not_repeat_gets_no_summary() -> None:
    repeats = RepeatFilter(0.05)
    log, out = logger_with(repeats)
    log.error("once")
    time.sleep(0.1)
    repeats.flush()
    assert out.lines == ["ERROR once"]


def test_memory_is_bounded_by_max_keys_and_the_evicted_key_is_summarized() -> None:
    repeats = RepeatFilter(60, max_keys=4)
    log, out = logger_with(repeats)
    log.error("first %s", 1)
    log.error("first %s", 2)
    for i in range(100):
        log.error(f"distinct template {i}")  # a new key each: what the bound is for
    assert repeats.tracked == 4
    assert "ERROR first 2 (1 more in the last 60s)" in out.lines


def test_flushing_everything_summarizes_windows_still_open() -> None:
    repeats = RepeatFilter(60)
    log, out = logger_with(repeats)
    for _ in range(3):
        log.warning("replica %s failed %d health probes", "r1", 3)
    repeats.flush()
    assert out.lines == ["WARNING replica r1 failed 3 health probes"]
    repeats.flush(everything=True)  # what exit does
    assert out.lines[1:] == ["WARNING replica r1 failed 3 health probes (2 more in the last 60s)"]
