"""Input drift of a served model version: a sample of serving inputs compared with the reference statistics
recorded at registration (observe/reference.py), as a population stability index and a mean shift per feature.

The request path only counts, and every ``sample_every``-th request copies its rows into a ring of the last
``window`` rows; the statistics are computed when /metrics is scraped (``DriftCollector``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.formats.samples import Array
from conveyor.observe.reference import Reduce, bin_index, features_of

EPSILON = 1e-4
"""Floor of a bin's proportion in PSI: an empty bin would make the log infinite."""
PSI_WARN = 0.1
PSI_DRIFT = 0.25
MIN_ROWS = 200
"""Fewer serving rows than this (or than the window, if smaller) are too few to judge: nothing is reported."""


def psi(expected: Array, actual: Array, epsilon: float = EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins: sum (a - e) ln(a / e)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def mean_shift(mean: float, reference_mean: float, reference_std: float) -> float:
    """How far the serving mean is from the reference mean, in reference standard deviations."""
    if reference_std > 0:
        return (mean - reference_mean) / reference_std
    return 0.0 if mean == reference_mean else math.copysign(math.inf, mean - reference_mean)


def status(psi_value: float) -> str:
    """ok below 0.1, warn below 0.25, drift from 0.25 (the usual PSI reading)."""
    return "ok" if psi_value < PSI_WARN else "warn" if psi_value < PSI_DRIFT else "drift"


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    feature: str
    psi: float
    mean_shift: float
    rows: int


@dataclass(frozen=True, slots=True)
class _Feature:
    name: str
    column: int  # in its input's feature matrix
    mean: float
    std: float
    edges: Array
    expected: Array


class _Ring:
    """The last ``size`` rows of one input's feature matrix."""

    def __init__(self, size: int, width: int) -> None:
        self.rows = np.zeros((size, width), dtype=np.float64)
        self.next = 0
        self.filled = 0

    def add(self, x: Array) -> None:
        size = len(self.rows)
        if len(x) >= size:
            self.rows[:] = x[-size:]
            self.next, self.filled = 0, size
            return
        end = self.next + len(x)
        if end <= size:
            self.rows[self.next : end] = x
        else:
            split = size - self.next
            self.rows[self.next :] = x[:split]
            self.rows[: end - size] = x[split:]
        self.next = end % size
        self.filled = min(size, self.filled + len(x))


class DriftMonitor:
    """Samples one model version's serving inputs; ``drift()`` compares them with its reference."""

    def __init__(
        self, model: str, version: str, reference: Mapping[str, Any], *, sample_every: int, window: int
    ):
        if sample_every < 1 or window < 1:
            raise ValueError("sample_every and window must be at least 1")
        self.model, self.version = model, version
        self.sample_every, self.window = sample_every, window
        self.sampled = 0  # requests whose rows were taken
        self.skipped = 0  # sampled requests whose shape did not match the reference's features
        self._countdown = 1  # the first request is sampled: a quiet deployment still shows something
        self._lock = threading.Lock()
        self._inputs: dict[str, tuple[Reduce, int]] = {}
        self._features: dict[str, list[_Feature]] = {}
        widths: dict[str, int] = {}
        for f in reference.get("features", []):
            widths[f["input"]] = max(widths.get(f["input"], 0), int(f["index"]) + 1)
            self._features.setdefault(f["input"], []).append(
                _Feature(
                    f["name"],
                    int(f["index"]),
                    float(f["mean"]),
                    float(f["std"]),
                    np.asarray(f["edges"], dtype=np.float64),
                    np.asarray(f["expected"], dtype=np.float64),
                )
            )
        for name, reduce in reference.get("inputs", {}).items():
            if name in widths:
                self._inputs[name] = (reduce, widths[name])
        self._rings = {name: _Ring(window, width) for name, (_, width) in self._inputs.items()}

    def observe(self, inputs: Mapping[str, Array]) -> None:
        """Called for every request: a countdown, and a copy of the rows of every ``sample_every``-th."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.sample_every
        matrices = []
        for name, (reduce, width) in self._inputs.items():
            arr = inputs.get(name)
            if arr is None:
                continue
            try:
                x = features_of(arr, reduce)
            except (TypeError, ValueError):  # not numbers after all (a BYTES tensor under a numeric name)
                x = None
            if x is None or x.ndim != 2 or x.shape[1] < width:
                self.skipped += 1
                return
            matrices.append((name, x[:, :width]))
        with self._lock:
            for name, x in matrices:
                self._rings[name].add(x)
            self.sampled += 1

    def drift(self) -> list[FeatureDrift]:
        """PSI and mean shift per feature over the rows held; empty until there are enough rows to judge."""
        with self._lock:
            held = {name: ring.rows[: ring.filled].copy() for name, ring in self._rings.items()}
        out: list[FeatureDrift] = []
        need = min(MIN_ROWS, self.window)
        for name, x in held.items():
            for f in self._features[name]:
                v = x[:, f.column]
                v = v[np.isfinite(v)]
                if len(v) < need:
                    continue
                counts = np.bincount(bin_index(f.edges, v), minlength=len(f.expected))
                shift = mean_shift(float(v.mean()), f.mean, f.std)
                out.append(FeatureDrift(f.name, psi(f.expected, counts / len(v)), shift, len(v)))
        return out


class DriftCollector:
    """Exports every live monitor's drift at scrape: the PSI and mean shift gauges."""

    def __init__(self) -> None:
        self._monitors: dict[int, DriftMonitor] = {}
        self._lock = threading.Lock()

    def add(self, monitor: DriftMonitor) -> None:
        with self._lock:
            self._monitors[id(monitor)] = monitor

    def remove(self, monitor: DriftMonitor) -> None:
        with self._lock:
            self._monitors.pop(id(monitor), None)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from conveyor.observe import metrics

        psi_family, shift_family = (
            GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
            for m in (metrics.METRICS[metrics.DRIFT_PSI], metrics.METRICS[metrics.DRIFT_MEAN_SHIFT])
        )
        with self._lock:
            monitors = list(self._monitors.values())
        for m in monitors:
            for d in m.drift():
                psi_family.add_metric([m.model, m.version, d.feature], d.psi)
                shift_family.add_metric([m.model, m.version, d.feature], d.mean_shift)
        yield psi_family
        yield shift_family


_collector: DriftCollector | None = None
_collector_lock = threading.Lock()


def collector() -> DriftCollector:
    """The process's one collector, registered in ``conveyor.observe.metrics.REGISTRY`` when first asked."""
    global _collector
    with _collector_lock:
        if _collector is None:
            from conveyor.observe.metrics import REGISTRY

            _collector = DriftCollector()
            REGISTRY.register(_collector)
        return _collector
