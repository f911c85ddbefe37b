"""Durations and upper bounds of the spec, free of pydantic: the CLI's options read them at start."""

from __future__ import annotations

import re
from typing import Final

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# Upper bounds: a typo (an extra zero, a pasted id) is refused when the file is read instead of being
# carried out. A target may allow fewer (the local one runs every replica as a process on this machine).
MAX_REPLICAS: Final = 1000
MAX_BATCH_SIZE: Final = 65_536
MAX_QUEUE_SIZE: Final = 1_000_000
MAX_QUEUE_DELAY_MICROSECONDS: Final = 10_000_000  # 10 s
MAX_REQUEST_TIMEOUT_MILLISECONDS: Final = 3_600_000  # 1 h
MAX_THREADS: Final = 1024
MAX_CACHE_ENTRIES: Final = 10_000_000
MAX_CACHE_BYTES: Final = 64 * 1024**3  # 64 GiB


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``500ms``, ``30s``, ``5m`` or ``1h``; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit: ms, s, m or h (e.g. 30s)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
