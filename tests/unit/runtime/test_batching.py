"""Batching policy: settings, which requests share a key, merging and splitting rows back."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.runtime import BatchingConfig
from conveyor.runtime.batching import batch_key, merge, split
from conveyor.settings import Settings


def _img(n: int, size: int) -> np.ndarray:
    return np.zeros((n, 3, size, size), np.float32)


def test_defaults_match_the_settings_and_overrides_win() -> None:
    s = Settings()
    cfg = BatchingConfig.from_settings(s)
    assert cfg == BatchingConfig()
    assert cfg.max_batch_size == s.max_batch_size and cfg.max_queue_size == s.max_queue_size
    assert BatchingConfig.from_settings(s, max_batch_size=4, max_queue_size=None).max_batch_size == 4
    assert BatchingConfig.from_settings(s, max_queue_size=None).max_queue_size == s.max_queue_size


@pytest.mark.parametrize(
    "field", ["max_batch_size", "max_queue_size", "request_timeout_ms", "max_queue_delay_us"]
)
def test_nonsense_settings_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BatchingConfig(**{field: -1})


def test_same_non_batch_shape_and_outputs_share_a_key() -> None:
    rows, key = batch_key({"x": _img(2, 64)}, ["x"], ["y"]) or (0, None)
    assert rows == 2
    assert batch_key({"x": _img(5, 64)}, ["x"], ["y"]) == (5, key)


def test_different_image_sizes_dtypes_or_outputs_never_share_a_key() -> None:
    base = batch_key({"x": _img(1, 64)}, ["x"], ["y"])
    assert base is not None
    others = [
        batch_key({"x": _img(1, 32)}, ["x"], ["y"]),
        batch_key({"x": _img(1, 64).astype(np.float64)}, ["x"], ["y"]),
        batch_key({"x": _img(1, 64)}, ["x"], ["y", "z"]),
    ]
    assert all(o is not None and o[1] != base[1] for o in others)


def test_requests_that_cannot_be_cut_by_rows_run_alone() -> None:
    assert batch_key({"a": np.zeros((2, 3)), "b": np.zeros((3, 1))}, ["a", "b"], ["y"]) is None
    assert batch_key({"a": np.zeros(())}, ["a"], ["y"]) is None
    assert batch_key({"a": np.zeros((0, 3))}, ["a"], ["y"]) is None


def test_key_ignores_the_order_inputs_were_sent_in() -> None:
    a, b = np.zeros((1, 2)), np.zeros((1, 1))
    assert batch_key({"a": a, "b": b}, ["a", "b"], ["y"]) == batch_key({"b": b, "a": a}, ["a", "b"], ["y"])


def test_merge_then_split_gives_each_request_its_rows() -> None:
    feeds = [{"x": np.full((n, 2), i, np.float32)} for i, n in enumerate([1, 3, 2])]
    merged = merge(feeds)
    assert merged["x"].shape == (6, 2)
    parts = split([merged["x"] * 10, merged["x"][:, 0]], [1, 3, 2])
    assert parts is not None
    for i, (n, (y, z)) in enumerate(zip([1, 3, 2], parts, strict=True)):
        assert y.shape == (n, 2) and (y == i * 10).all() and z.shape == (n,)


def test_split_refuses_outputs_without_one_row_per_input_row() -> None:
    assert split([np.zeros((5, 2))], [1, 3]) is None
    assert split([np.zeros(())], [1]) is None
