"""KServe v2 tensors <-> numpy: datatypes, JSON ``data``, raw little-endian bytes and BYTES framing.

The protocol's BYTES elements travel as a 4-byte little-endian length followed by the bytes (in the
binary tensor data extension and in gRPC ``raw_input_contents``); in JSON they are strings.
Every check raises :class:`~edge.serve.status.RequestError` naming the tensor, never a numpy error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.serve.status import RequestError

# KServe v2 datatype -> numpy dtype (BYTES is an object array of bytes)
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_NUMPY = {v: k for k, v in DATATYPES.items() if k != "BYTES"}


def datatype_of(dtype: str | np.dtype[Any]) -> str:
    """The protocol's name for a numpy dtype (``float32`` -> ``FP32``)."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return "BYTES"
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise RequestError("internal", f"dtype {dt} has no KServe v2 datatype") from None


def numpy_dtype(datatype: str, where: str) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise RequestError("invalid", f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}") from None


def check_shape(shape: Sequence[Any], where: str, max_elements: int) -> tuple[int, ...]:
    """A request's shape as ints >= 0, its element count under ``max_elements``."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise RequestError("invalid", f"{where}: shape must be a list of integers, got {shape!r}") from None
    if any(d < 0 for d in dims) or any(isinstance(d, bool) for d in shape):
        raise RequestError("invalid", f"{where}: shape {list(dims)} has a negative or boolean dimension")
    count = 1
    for d in dims:
        count *= d
        if count > max_elements:
            raise RequestError(
                "too_large", f"{where}: shape {list(dims)} is over the limit of {max_elements} elements per tensor"
            )
    return dims


def element_count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def serialize_bytes(values: Any) -> bytes:
    """BYTES elements (bytes or str) in the protocol's length-prefixed framing."""
    parts = []
    for item in np.asarray(values, dtype=object).reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes(buf: bytes | memoryview, count: int, where: str) -> np.ndarray:
    """``count`` length-prefixed BYTES elements filling exactly ``buf``."""
    view = memoryview(buf)
    items: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise RequestError("invalid", f"{where}: BYTES data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise RequestError("invalid", f"{where}: a BYTES element of {n} bytes runs past the tensor's data")
        items.append(bytes(view[pos : pos + n]))
        pos += n
    if len(items) != count:
        raise RequestError("invalid", f"{where}: shape needs {count} BYTES elements, the data holds {len(items)}")
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def from_raw(datatype: str, shape: tuple[int, ...], buf: bytes | memoryview, where: str) -> np.ndarray:
    """A tensor from its raw bytes (binary extension, gRPC raw contents); the byte size must match exactly."""
    dtype = numpy_dtype(datatype, where)
    count = element_count(shape)
    if datatype == "BYTES":
        return deserialize_bytes(buf, count, where).reshape(shape)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise RequestError(
            "invalid",
            f"{where}: {datatype} {list(shape)} needs {expected} bytes of data, got {len(buf)}",
        )
    return np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape)


def from_json(datatype: str, shape: tuple[int, ...], data: Any, where: str) -> np.ndarray:
    """A tensor from JSON ``data`` (flat or nested lists; BYTES as strings)."""
    dtype = numpy_dtype(datatype, where)
    count = element_count(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data, where)
        if not all(isinstance(x, str) for x in flat):
            raise RequestError("invalid", f"{where}: BYTES data must be strings")
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [x.encode("utf-8") for x in flat]
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError):
            raise RequestError("invalid", f"{where}: data is not a regular nested list of numbers") from None
        if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "b" and datatype != "BOOL"):
            raise RequestError("invalid", f"{where}: data of {datatype} must be numbers, got {arr.dtype.kind!r} values")
        if datatype != "BOOL" and arr.dtype.kind == "f" and dtype.kind in "iu" and not np.all(np.mod(arr, 1) == 0):
            raise RequestError("invalid", f"{where}: {datatype} data holds non-integer numbers")
        arr = arr.reshape(-1)
    if arr.size != count:
        raise RequestError("invalid", f"{where}: shape {list(shape)} needs {count} values, the data holds {arr.size}")
    if datatype == "BYTES":
        return arr.reshape(shape)
    try:
        return arr.astype(dtype).reshape(shape)
    except (OverflowError, ValueError):
        raise RequestError("invalid", f"{where}: data does not fit {datatype}") from None


def _flatten(data: list[Any], where: str) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def to_raw(arr: np.ndarray) -> bytes:
    """Raw bytes of an output tensor (BYTES framed, numbers little-endian C order)."""
    if arr.dtype.kind in "OSU":
        return serialize_bytes(arr)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def to_json_data(arr: np.ndarray) -> list[Any]:
    """Flat JSON ``data`` of an output tensor (BYTES decoded as UTF-8 text)."""
    if arr.dtype.kind in "OSU":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    flat: list[Any] = arr.reshape(-1).tolist()
    return flat
