"""Reference statistics from a registration sample: per feature count, mean, std, quantile bins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.formats.signature import Signature, TensorSpec
from conveyor.observe.reference import BINS, MIN_ROWS, compute_reference, load_reference


def sig(*inputs: TensorSpec) -> Signature:
    return Signature(inputs=inputs, outputs=())


def test_columns_of_a_2d_input_get_mean_std_and_ten_equal_bins() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5, 3, 4000), rng.uniform(0, 1, 4000)])
    ref = compute_reference(x, sig(TensorSpec("input", "FP32", (-1, 2))), source="sample")
    assert ref["available"] and ref["rows"] == 4000 and ref["bins"] == BINS
    assert ref["inputs"] == {"input": "columns"}
    first, second = ref["features"]
    assert (first["name"], second["name"]) == ("input[0]", "input[1]")
    assert first["count"] == 4000
    assert first["mean"] == pytest.approx(5, abs=0.2) and first["std"] == pytest.approx(3, abs=0.2)
    assert len(first["edges"]) == BINS - 1
    assert first["expected"] == pytest.approx([0.1] * BINS, abs=0.002)
    assert sum(second["expected"]) == pytest.approx(1.0)


def test_a_small_sample_gives_no_reference_and_says_why() -> None:
    ref = compute_reference(
        np.zeros((MIN_ROWS - 1, 3)), sig(TensorSpec("x", "FP32", (-1, 3))), source="sample"
    )
    assert ref == {
        "available": False,
        "reason": f"the sample has {MIN_ROWS - 1} rows; drift needs at least {MIN_ROWS} (give --reference)",
    }
    assert (
        compute_reference(None, sig(TensorSpec("x", "FP32", (-1, 3))), source="sample")["available"] is False
    )


def test_fewer_rows_get_fewer_bins() -> None:
    ref = compute_reference(np.arange(100.0), sig(TensorSpec("x", "FP64", (-1,))), source="sample")
    assert ref["bins"] == 5 and ref["features"][0]["name"] == "x"
    assert ref["inputs"] == {"x": "value"}


def test_images_are_described_by_their_channel_means_and_text_is_skipped() -> None:
    rng = np.random.default_rng(1)
    images = rng.normal(size=(60, 3, 4, 4)) + np.array([0.0, 10.0, 20.0])[None, :, None, None]
    signature = sig(TensorSpec("image", "FP32", (-1, 3, 4, 4)), TensorSpec("caption", "BYTES", (-1,)))
    ref = compute_reference({"image": images}, signature, source="sample")  # a sample holds only numbers
    assert ref["inputs"] == {"image": "channel_mean"}
    assert [f["name"] for f in ref["features"]] == ["image[0]", "image[1]", "image[2]"]
    assert [round(f["mean"]) for f in ref["features"]] == [0, 10, 20]
    assert ref["skipped"] == ["caption (BYTES: not numeric)"]


def test_discrete_features_keep_their_ties_in_one_bin() -> None:
    x = np.array([0.0] * 70 + [1.0] * 30)
    f = compute_reference(x, sig(TensorSpec("flag", "INT64", (-1,))), source="sample")["features"][0]
    assert len(f["edges"]) == len(set(f["edges"]))
    assert sorted(v for v in f["expected"] if v) == pytest.approx([0.3, 0.7])


def test_a_sample_for_another_model_is_no_reference() -> None:
    ref = compute_reference(
        {"other": np.zeros((100, 2))}, sig(TensorSpec("x", "FP32", (-1, 2))), source="sample"
    )
    assert not ref["available"] and "other" in ref["reason"]


def test_reference_files_json_rows_or_named_inputs(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([[1, 2], [3, 4]]))
    assert load_reference(rows).shape == (2, 2)  # type: ignore[union-attr]
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"x": [1.5, 2.5]}))
    assert list(load_reference(named)) == ["x"]
    bad = tmp_path / "bad.json"
    bad.write_text('["a", "b"]')
    with pytest.raises(InvalidInput, match="numeric"):
        load_reference(bad)
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    assert load_reference(tmp_path / "x.npy").shape == (3, 2)  # type: ignore[union-attr]
