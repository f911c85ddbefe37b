"""Inputs derived from a fitted scikit-learn model, for the parity check of an import given no sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.formats.samples import Array
from conveyor.formats.sklearn_exact import tree_structures

_MAX_DERIVED_ROWS = 2048


def derived_inputs(model: Any, n_features: int) -> Array | None:
    """float32-exact rows from what a fitted scikit-learn model recorded; None when nothing usable.

    Rows span the feature ranges the first step learned (a scaler's mean ± 3 scales, min and max) and sit on
    both sides of every tree threshold, mapped back through the steps before the trees when they can be
    inverted: the inputs where a converted model is most likely to take another branch.
    """
    steps = [s for _, s in getattr(model, "steps", [("", model)]) if s is not None and s != "passthrough"]
    if not steps:
        return None
    rows: list[Array] = []
    centre, spread = _ranges(steps[0], n_features)
    if centre is not None and spread is not None:
        rows.append(centre + np.outer(np.linspace(-3.0, 3.0, 13), spread))
    for i, step in enumerate(steps):
        if _tree_splits(step):
            prefix = steps[:i]
            base = (
                np.zeros(_width(prefix, n_features)) if prefix else (centre if centre is not None else None)
            )
            around = _around_thresholds(step, base)
            if around is not None:
                z, features = around
                x = _invert(prefix, z)
                if x is not None:
                    rows.append(_straddle(x, features))
            break
    if not rows:
        return None
    x = np.vstack(rows).astype(np.float32)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) > _MAX_DERIVED_ROWS:  # evenly spread, deterministic: the same model is checked the same way
        x = x[np.linspace(0, len(x) - 1, _MAX_DERIVED_ROWS).astype(np.int64)]
    return np.ascontiguousarray(x) if len(x) else None


def _ranges(step: Any, n_features: int) -> tuple[Array | None, Array | None]:
    """A centre and a spread per feature from a first step's fitted statistics."""
    for centre_attr, spread_attr in (
        ("mean_", "scale_"),
        ("center_", "scale_"),
        ("data_min_", "data_range_"),
    ):
        centre, spread = getattr(step, centre_attr, None), getattr(step, spread_attr, None)
        if centre is None or spread is None:
            continue
        centre, spread = np.asarray(centre, dtype=np.float64), np.asarray(spread, dtype=np.float64)
        if centre.shape == spread.shape == (n_features,):
            if centre_attr == "data_min_":  # min and max are the ends of the range
                return centre + spread / 2, spread / 6
            return centre, spread
    return None, None


def _tree_splits(step: Any) -> list[tuple[int, float]]:
    splits: list[tuple[int, float]] = []
    for tree in tree_structures(step):
        inner = tree.children_left != -1
        splits += zip(tree.feature[inner].tolist(), tree.threshold[inner].tolist(), strict=True)
    return splits


def _around_thresholds(step: Any, base: Array | None) -> tuple[Array, Array] | None:
    """Rows equal to ``base`` but for one feature, set on a threshold; and that feature, per row."""
    splits = sorted(set(_tree_splits(step)))
    if not splits:
        return None
    width = int(getattr(step, "n_features_in_", max(f for f, _ in splits) + 1))
    if base is None or base.shape != (width,):
        base = np.zeros(width)
        for f in range(width):  # no statistics: the middle of the thresholds on that feature
            on_f = [t for g, t in splits if g == f]
            base[f] = float(np.median(on_f)) if on_f else 0.0
    if 2 * len(splits) > _MAX_DERIVED_ROWS:
        keep = np.linspace(0, len(splits) - 1, _MAX_DERIVED_ROWS // 2).astype(np.int64)
        splits = [splits[i] for i in keep]
    z = np.repeat(base[None, :], 2 * len(splits), axis=0)
    features = np.repeat(np.array([f for f, _ in splits], dtype=np.int64), 2)
    z[np.arange(len(z)), features] = np.repeat([t for _, t in splits], 2)
    return z, features


def _straddle(x: Array, features: Array) -> Array:
    """Pairs of rows on a threshold become the two float32 inputs either side of it, on that feature."""
    x = x.copy()
    rows = np.arange(len(x))
    at = x[rows, features]
    near = at.astype(np.float32)
    down = np.where(near > at, np.nextafter(near, np.float32(-np.inf)), near)
    up = np.nextafter(down, np.float32(np.inf))
    x[rows, features] = np.where(rows % 2 == 0, down, up).astype(np.float64)
    return x


def _width(prefix: list[Any], n_features: int) -> int:
    last = prefix[-1]
    out = getattr(last, "n_features_out_", None) or getattr(last, "n_features_in_", None)
    return int(out) if out is not None else n_features


def _invert(prefix: list[Any], z: Array) -> Array | None:
    """Map tree inputs back to model inputs through steps that can be inverted; None when one cannot."""
    x = z
    for step in reversed(prefix):
        inverse = getattr(step, "inverse_transform", None)
        if inverse is None:
            return None
        try:
            x = np.asarray(inverse(x), dtype=np.float64)
        except Exception:  # a step that cannot invert what it is given: no derived rows from the trees
            return None
    return x
