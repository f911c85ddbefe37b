"""Open Inference Protocol datatypes and their numpy / ONNX equivalents, decided once here."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import InvalidInput

# V2 datatype -> numpy dtype (little-endian, as the binary extension requires). BYTES is object.
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}

NUMPY_TO_V2: dict[np.dtype[Any], str] = {dt: name for name, dt in V2_TO_NUMPY.items()}
# numpy unicode / bytes arrays travel as BYTES.
_KIND_TO_V2 = {"U": "BYTES", "S": "BYTES", "O": "BYTES"}

# ONNX Runtime type strings ("tensor(float)") -> V2 datatype.
ORT_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# Size in bytes of one element in the binary extension; BYTES is variable.
ELEMENT_SIZE: dict[str, int] = {name: dt.itemsize for name, dt in V2_TO_NUMPY.items() if name != "BYTES"}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a V2 datatype name; InvalidInput for an unknown name."""
    try:
        return V2_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"unknown datatype {datatype!r}; expected one of {', '.join(V2_TO_NUMPY)}"
        ) from None


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype name for a numpy dtype; InvalidInput when there is none."""
    dt = np.dtype(dtype)
    name = NUMPY_TO_V2.get(dt.newbyteorder("<") if dt.byteorder == ">" else dt)
    if name is None:
        name = _KIND_TO_V2.get(dt.kind)
    if name is None:
        raise InvalidInput(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return name


def ort_to_v2(ort_type: str) -> str:
    """V2 datatype for an ONNX Runtime type string such as ``tensor(float)``."""
    try:
        return ORT_TO_V2[ort_type]
    except KeyError:
        raise InvalidInput(f"ONNX type {ort_type} is not supported by the Open Inference Protocol") from None
