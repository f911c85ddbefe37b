"""Dynamic batching policy: per-version settings, which requests may share a run, merging and splitting."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from conveyor.settings import Settings

Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """How one model version queues and merges requests (defaults: ``Settings``; see docs/batching.md)."""

    max_batch_size: int = 32
    """Most rows (first dimension, summed over requests) one ONNX Runtime call takes; 1 turns merging off."""
    max_queue_delay_us: int = 500
    """Longest the batcher waits for more requests while recent load says more are coming."""
    max_queue_size: int = 256
    """Requests that may wait for this version; past it new ones fail fast with Overloaded (429)."""
    request_timeout_ms: int = 30_000
    """A request unanswered after this long fails with DeadlineExceeded (504); if still queued, never runs."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_size", "request_timeout_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must not be negative, got {self.max_queue_delay_us}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: int | None) -> BatchingConfig:
        """The settings' batching fields, each replaced by an override that is not None."""
        values = {
            "max_batch_size": settings.max_batch_size,
            "max_queue_delay_us": settings.max_queue_delay_us,
            "max_queue_size": settings.max_queue_size,
            "request_timeout_ms": settings.request_timeout_ms,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def batch_key(
    feeds: Mapping[str, Array], inputs: Sequence[str], outputs: Sequence[str]
) -> tuple[int, Hashable] | None:
    """(rows, key) when this request may share a run with others of the same key; None: it runs alone.

    Requests merge only when all their inputs have the same row count and every input agrees with the
    other requests on dtype and non-batch shape, and they ask for the same outputs.
    """
    rows = -1
    parts: list[Hashable] = []
    for name in inputs:  # the model's order, so the key ignores the order a client sent inputs in
        arr = feeds[name]
        if arr.ndim == 0 or (rows >= 0 and arr.shape[0] != rows):
            return None
        rows = arr.shape[0]
        parts.append((name, arr.dtype.str, arr.shape[1:]))
    if rows <= 0:
        return None
    return rows, (tuple(parts), tuple(outputs))


def merge(feeds: Sequence[Mapping[str, Array]]) -> dict[str, Array]:
    """The requests' inputs concatenated along the first dimension (one copy, the one ORT needs)."""
    first = feeds[0]
    return {name: np.concatenate([f[name] for f in feeds]) for name in first}


def split(outputs: Sequence[Array], rows: Sequence[int]) -> list[list[Array]] | None:
    """Each request's rows of the merged outputs, as views; None if an output does not have one row per
    input row (the model mixes rows, so its merged result cannot be handed back)."""
    total = sum(rows)
    if any(out.ndim == 0 or out.shape[0] != total for out in outputs):
        return None
    per_request: list[list[Array]] = []
    start = 0
    for n in rows:
        per_request.append([out[start : start + n] for out in outputs])
        start += n
    return per_request
