from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.formats import load_sample


def test_npy_loads_one_array(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "s.npy", arr)
    loaded = load_sample(tmp_path / "s.npy")
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_array_equal(loaded, arr)


def test_npz_keys_are_input_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", a=np.ones((2, 3)), b=np.zeros((2, 1), dtype=np.int64))
    loaded = load_sample(tmp_path / "s.npz")
    assert isinstance(loaded, dict)
    assert sorted(loaded) == ["a", "b"]
    assert loaded["b"].dtype == np.int64


def test_csv_without_header(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("1,2,3\n4.5,5,-6e-1\n")
    loaded = load_sample(tmp_path / "s.csv")
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_allclose(loaded, np.array([[1, 2, 3], [4.5, 5, -0.6]]))


def test_csv_header_row_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("f0,f1\n1,2\n3,4\n\n")
    loaded = load_sample(tmp_path / "s.csv")
    assert isinstance(loaded, np.ndarray)
    assert loaded.shape == (2, 2)


def test_non_numeric_csv_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,red\n")
    with pytest.raises(InvalidInput, match=r"bad\.csv.*line 3.*'red'"):
        load_sample(tmp_path / "bad.csv")


def test_ragged_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("1,2\n3\n")
    with pytest.raises(InvalidInput, match="line 2 has 1 columns, expected 2"):
        load_sample(tmp_path / "bad.csv")


def test_header_only_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(InvalidInput, match="only a header row"):
        load_sample(tmp_path / "h.csv")


def test_corrupt_npy_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "x.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InvalidInput, match=r"cannot read sample .*x\.npy"):
        load_sample(tmp_path / "x.npy")


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=r"o\.npy"):
        load_sample(tmp_path / "o.npy")


def test_missing_and_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        load_sample(tmp_path / "nope.npy")
    (tmp_path / "s.txt").write_text("1,2")
    with pytest.raises(InvalidInput, match=r"unsupported format '\.txt'"):
        load_sample(tmp_path / "s.txt")
