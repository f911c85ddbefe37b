"""One tensor between numpy and its two V2 wire forms: JSON ``data`` and the binary tensor data extension.

Callers check shapes and sizes first (``check_shape``, ``binary_size_ok``): a bad claim allocates nothing.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from conveyor.errors import InvalidInput

Array = np.ndarray[Any, Any]
_MAX_DIM = 2**63 - 1  # the spec: each dimension fits an unsigned 64-bit integer; numpy needs it to fit int64
_MAX_NDIM = 64  # numpy's limit
_MAX_SPAN = 2**59  # the most elements numpy can lay out with 8-byte items (numeric or object)
_LEN = struct.Struct("<I")


def check_shape(where: str, shape: Any) -> tuple[tuple[int, ...], int]:
    """The shape as a tuple and its element count; InvalidInput unless a list of non-negative integers
    that numpy can make an array of."""
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d <= _MAX_DIM for d in shape)):
        raise InvalidInput(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > _MAX_NDIM:
        raise InvalidInput(f"{where}: shape has {len(shape)} dimensions; at most {_MAX_NDIM} are supported")
    count = math.prod(shape)
    # An empty tensor's other dimensions are not bounded by the element limit, but numpy refuses shapes whose
    # bytes would not fit 63 bits even then ("array is too big"): [0, 2**62] was a 500.
    if count == 0 and math.prod(d for d in shape if d) > _MAX_SPAN:
        raise InvalidInput(f"{where}: shape {shape} is too large even for an empty tensor")
    return tuple(shape), count


def from_json(
    where: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, data: Any
) -> Array:
    """A tensor from JSON ``data``, flat or nested, row-major; the element count must match the shape."""
    if not isinstance(data, list):
        data = [data]  # a bare scalar; the count check below decides whether the shape allows it
    # A flat list's length is known before numpy allocates anything.
    if len(data) != count and not (data and isinstance(data[0], list)):
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, data has {len(data)}")
    if datatype == "BYTES":
        return _bytes_from_json(where, shape, count, data)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, as an error
            arr = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInput(f"{where}: data is not a valid {datatype} tensor ({e})") from None
    # numpy converts what JSON cannot mean: null -> NaN, 1e39 -> inf in FP32, 1.5 -> 1 in INT64. JSON has no
    # NaN or infinity, so a non-finite float was one of those; an integer tensor must hold integers.
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise InvalidInput(f"{where}: data holds null or a number out of the {datatype} range")
    if arr.dtype.kind in "iu" and arr.size and not _all_of(data, int):
        raise InvalidInput(f"{where}: {datatype} data must be integers")
    # numpy reads any string, null or number as a bool ("false" -> True): a BOOL tensor must hold booleans.
    if arr.dtype.kind == "b" and arr.size and not _all_of(data, bool):
        raise InvalidInput(f"{where}: BOOL data must be true or false")
    if arr.size != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, data has {arr.size}")
    return arr.reshape(shape)


def _all_of(data: list[Any], kind: type) -> bool:
    """Every element of (nested) ``data`` is a ``kind`` (int: a JSON integer, or a boolean). numpy would
    truncate 1.5 to 1 silently, read a list mixing 0 and 2**64 - 1 as floats, and "false" as True: look at
    the Python values (integer and BOOL tensors only)."""
    stack: list[Any] = [data]
    while stack:
        for x in stack.pop():
            if isinstance(x, list):
                stack.append(x)
            elif not isinstance(x, kind):
                return False
    return True


def _bytes_from_json(where: str, shape: tuple[int, ...], count: int, data: list[Any]) -> Array:
    try:
        flat = np.asarray(data, dtype=object).reshape(-1)
    except ValueError as e:
        raise InvalidInput(f"{where}: data is not a valid BYTES tensor ({e})") from None
    if flat.size != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, data has {flat.size}")
    out = np.empty(count, dtype=object)
    try:
        out[:] = [v.encode() for v in flat]
    except AttributeError:
        raise InvalidInput(f"{where}: BYTES data must be strings") from None
    return out.reshape(shape)


def binary_size_ok(where: str, datatype: str, itemsize: int, count: int, size: Any) -> int:
    """``binary_data_size`` checked against what the shape needs, before any allocation."""
    if type(size) is not int or size < 0:
        raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer, got {size!r}")
    if datatype == "BYTES":
        if size < 4 * count:  # every BYTES element carries at least its 4-byte length
            raise InvalidInput(f"{where}: binary_data_size {size} is too small for {count} BYTES elements")
    elif size != count * itemsize:
        raise InvalidInput(
            f"{where}: binary_data_size {size} does not match shape of {count} {datatype} elements "
            f"({count * itemsize} bytes)"
        )
    return size


def from_binary(
    where: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    count: int,
    body: bytes,
    offset: int,
    size: int,
) -> Array:
    """A tensor read from ``body[offset:offset+size]``: a zero-copy view unless the offset is misaligned."""
    if datatype == "BYTES":
        return _bytes_from_binary(where, shape, count, body, offset, size)
    if count == 0:
        return np.empty(shape, dtype=dtype)
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    if not arr.flags.aligned:
        arr = arr.copy()  # the JSON header has any length; kernels may assume aligned data
    return arr.reshape(shape)


def _bytes_from_binary(
    where: str, shape: tuple[int, ...], count: int, body: bytes, offset: int, size: int
) -> Array:
    out = np.empty(count, dtype=object)
    pos, end = offset, offset + size
    for i in range(count):
        if pos + 4 > end:
            raise InvalidInput(f"{where}: binary BYTES data ends before element {i}")
        (n,) = _LEN.unpack_from(body, pos)
        pos += 4
        if pos + n > end:
            raise InvalidInput(f"{where}: binary BYTES element {i} claims {n} bytes past the end of its data")
        out[i] = body[pos : pos + n]
        pos += n
    if pos != end:
        raise InvalidInput(
            f"{where}: binary_data_size {size} but its {count} BYTES elements use {pos - offset}"
        )
    return out.reshape(shape)


def to_json_data(where: str, arr: Array, datatype: str) -> Any:
    """Flat row-major JSON data: the array itself (orjson serializes numpy) or, for BYTES, strings."""
    if datatype == "BYTES":
        try:
            return [v if isinstance(v, str) else bytes(v).decode() for v in arr.reshape(-1).tolist()]
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: BYTES data is not UTF-8 text; ask for it as binary data") from None
    flat = arr.reshape(-1)
    if flat.dtype.byteorder == ">" or not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))
    return flat


def to_binary(arr: Array, datatype: str) -> bytes | memoryview:
    """The binary extension's bytes: little-endian row-major, or 4-byte-length-prefixed elements for BYTES."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in arr.reshape(-1).tolist():
            b = v.encode() if isinstance(v, str) else bytes(v)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return memoryview(a).cast("B") if a.size else b""  # type: ignore[arg-type]
