"""Which framework a source is: from an object's type, or from a file's content, then its extension."""

from __future__ import annotations

import zipfile
from pathlib import Path

from conveyor.errors import ConversionError

SUPPORTED = (
    "supported: ONNX (.onnx file, bytes or onnx.ModelProto); "
    "scikit-learn (estimator or pipeline, .skops file, .pkl/.pickle/.joblib with --trust-pickle); "
    "PyTorch (nn.Module or torch.export program, .pt2 file from torch.export.save, "
    "TorchScript .pt/.pth file, a module saved whole with torch.save with --trust-pickle "
    "when its class is importable); "
    "XGBoost and LightGBM (boosting extra: their scikit-learn estimators, also as a pipeline's last step, "
    "XGBoost .json/.ubj and LightGBM .txt model files)"
)

# File kinds; each maps to a loader. "pickle" is any framework: its unpickled object decides.
ONNX, SKOPS, PICKLE = "onnx", "skops", "pickle"
TORCHSCRIPT, TORCH_EXPORT, TORCH_SAVE = "torchscript", "torch_export", "torch_save"
TORCH_KINDS = (TORCHSCRIPT, TORCH_EXPORT, TORCH_SAVE)
XGBOOST_MODEL, LIGHTGBM_MODEL = "xgboost_model", "lightgbm_model"  # the frameworks' own model files
BOOSTER_KINDS = {XGBOOST_MODEL: "xgboost", LIGHTGBM_MODEL: "lightgbm"}
KIND_FRAMEWORK = {
    ONNX: "onnx",
    SKOPS: "sklearn",
    **{kind: "pytorch" for kind in TORCH_KINDS},
    **BOOSTER_KINDS,
}
_BY_EXTENSION = {
    ".onnx": ONNX,
    ".skops": SKOPS,
    ".pkl": PICKLE,
    ".pickle": PICKLE,
    ".joblib": PICKLE,
    ".pt": TORCH_SAVE,
    ".pth": TORCH_SAVE,
    ".pt2": TORCH_EXPORT,
    ".ubj": XGBOOST_MODEL,
}
_HEAD = 32  # enough of a file to tell its kind
_PICKLE_OPCODE = 0x80  # PROTO: how every pickle of protocol 2 or later starts (torch's legacy format too)
_COMPRESSED = (b"\x1f\x8b", b"ZF", b"BZh", b"\xfd7zXZ")  # gzip, zlib (joblib), bz2, xz: compressed joblib


def detect_object(obj: object) -> str | None:
    """The framework of an in-memory model, or None when it is none Conveyor knows."""
    from conveyor.formats.boosting import library_of
    from conveyor.formats.sklearn import is_estimator
    from conveyor.formats.torch import is_module

    if isinstance(obj, bytes | bytearray | memoryview):
        return "onnx"
    if type(obj).__module__.startswith("onnx") and type(obj).__name__ == "ModelProto":
        return "onnx"
    if is_module(obj):
        return "pytorch"
    library = library_of(obj)  # a booster, or one of their scikit-learn estimators alone
    if library is not None:
        return library
    if is_estimator(obj):
        return "sklearn"
    return None


def file_kind(path: Path) -> str:
    """Sniff the content first (extensions lie); fall back to the extension when the content says nothing."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror or e}") from e
    kind = None
    if head.startswith(b"PK\x03\x04"):
        kind = _zip_kind(path)
    elif head[:1] == bytes([_PICKLE_OPCODE]) or head.startswith(_COMPRESSED):
        kind = TORCH_SAVE if path.suffix.lower() in (".pt", ".pth") else PICKLE
    elif head.startswith((b'{"learner"', b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner", b"{i\x07learner")):
        kind = XGBOOST_MODEL  # XGBoost's JSON, or its UBJSON (.ubj): a learner object first
    elif head.startswith(b"tree\nversion="):
        kind = LIGHTGBM_MODEL  # LightGBM's text model file (Booster.save_model)
    elif _looks_like_onnx(path):
        kind = ONNX
    kind = kind or _BY_EXTENSION.get(path.suffix.lower())
    if kind is None:
        raise ConversionError(f"cannot tell what model {path.name} holds; {SUPPORTED}")
    return kind


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if "schema.json" in names:
        return SKOPS
    # torch archives put everything under one folder: torch.export.save writes models/*.json and an
    # archive_format file, TorchScript adds code/ and constants.pkl, torch.save only data.pkl
    if any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names):
        return TORCH_EXPORT
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return TORCHSCRIPT
    if any(n.endswith("/data.pkl") for n in names):
        return TORCH_SAVE
    return None


def _looks_like_onnx(path: Path) -> bool:
    from conveyor.formats.onnx import parse

    try:
        parse(path.read_bytes(), path.name)
    except (ConversionError, OSError):
        return False
    return True
