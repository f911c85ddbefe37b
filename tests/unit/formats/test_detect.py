from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio

from conveyor.errors import ConversionError, InvalidInput, NotFound
from conveyor.formats import import_model
from conveyor.formats.detect import file_kind


def test_content_wins_over_a_misleading_extension(pipeline: Any, tmp_path: Path) -> None:
    onnx_as_bin = tmp_path / "model.bin"
    onnx_as_bin.write_bytes(import_model(pipeline).onnx_bytes)
    assert file_kind(onnx_as_bin) == "onnx"
    skops_as_zip = tmp_path / "model.zip"
    sio.dump(pipeline, skops_as_zip)
    assert file_kind(skops_as_zip) == "skops"
    pickle_as_dat = tmp_path / "model.dat"
    joblib.dump(pipeline, pickle_as_dat)
    assert file_kind(pickle_as_dat) == "pickle"


def test_auto_detects_each_framework_from_files(pipeline: Any, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(import_model(pipeline).onnx_bytes)
    sio.dump(pipeline, tmp_path / "m.skops")
    assert import_model(tmp_path / "m.onnx").framework == "onnx"
    assert import_model(str(tmp_path / "m.skops")).framework == "sklearn"


def test_garbage_file_lists_what_is_supported(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01\x02 definitely not a model")
    with pytest.raises(ConversionError, match=r"cannot tell what model model\.bin holds; supported: ONNX"):
        import_model(path)


def test_unknown_object_lists_what_is_supported() -> None:
    with pytest.raises(ConversionError, match=r"cannot import a builtins\.dict; supported: ONNX"):
        import_model({"weights": [1, 2]})


def test_explicit_framework_must_match_the_file(pipeline: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    sio.dump(pipeline, path)
    with pytest.raises(ConversionError, match=r"m\.skops holds a sklearn model, not onnx"):
        import_model(path, framework="onnx")
    with pytest.raises(ConversionError, match=r"framework .pytorch. needs a torch\.nn\.Module"):
        import_model(pipeline, framework="pytorch")


def test_bad_arguments(pipeline: Any, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="model file not found"):
        import_model(tmp_path / "missing.onnx")
    with pytest.raises(InvalidInput, match="unknown framework 'tensorflow'"):
        import_model(pipeline, framework="tensorflow")
    with pytest.raises(InvalidInput, match="tolerance"):
        import_model(pipeline, tolerance=-1)
    with pytest.raises(InvalidInput, match="not numeric"):
        import_model(pipeline, sample=np.array([["a", "b"]]))
