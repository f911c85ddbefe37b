"""W3C Trace Context (``traceparent``) for the request path: parse the caller's, make this hop's span.

``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``. Each server that takes a request makes its own
span: the caller's trace id with a new span id, or a new trace when the caller sent none (or a malformed
one). That value goes on the server's log lines, back on its response, and on to the next hop as its parent.

The sampled flag (bit 0 of the flags) is the access log's decision, made once where a request enters: a
caller's sampled flag is kept, else the server draws with ``access_log_sample``. A replica behind the gateway
draws nothing (``rate=0``): it logs exactly the requests the gateway logs, so one request's lines are all
there or none are. Random ids come from ``random`` (not ``secrets``): they must not collide, not be secret,
and this runs per request.
"""

from __future__ import annotations

import random
import re

HEADER = "traceparent"
_VALID = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
SAMPLED_FLAGS = frozenset("13579bdf")  # a traceparent's last hex digit with bit 0 (sampled) set
_rate = 0.0  # set once at start from access_log_sample (configure_logging); 0 in tests that never set it
_bits = random.getrandbits
_draw = random.random


def set_sample_rate(rate: float) -> None:
    """The share of requests entering this process without a sampled caller that get an access log line."""
    global _rate
    _rate = min(1.0, max(0.0, rate))


def sample_rate() -> float:
    return _rate


def valid(traceparent: str | None) -> bool:
    """A version-00 traceparent with a non-zero trace id and parent id (what W3C says to accept)."""
    return traceparent is not None and len(traceparent) == 55 and _VALID.fullmatch(traceparent) is not None


def span(parent: str | None, rate: float | None = None) -> str:
    """This server's traceparent for a request whose caller sent ``parent`` (None: nothing). ``rate``:
    the sampling share for a caller that did not ask for sampling (default: the process's setting)."""
    if valid(parent):
        assert parent is not None
        trace_id, sampled = parent[3:35], parent[-1] in SAMPLED_FLAGS
    else:
        trace_id, sampled = f"{_bits(128) or 1:032x}", False
    if not sampled:
        share = _rate if rate is None else rate
        sampled = share > 0.0 and _draw() < share
    return f"00-{trace_id}-{_bits(64) or 1:016x}-{'01' if sampled else '00'}"


def sampled(traceparent: str | None) -> bool:
    """True when the request's access log line is wanted (its span's sampled flag is set)."""
    return traceparent is not None and traceparent[-1:] in SAMPLED_FLAGS


def trace_id(traceparent: str | None) -> str | None:
    """The 32 hex digits naming the whole trace, or None."""
    return traceparent[3:35] if traceparent is not None and valid(traceparent) else None
