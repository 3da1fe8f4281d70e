"""Stage 1: read an ONNX file into a checked, shape-inferred :class:`onnx.ModelProto`.

``load_onnx(path)`` turns every way a file can be wrong into one :class:`~edge.errors.BuildError` line:
missing file, not ONNX at all, truncated, external-data file missing, checker failure. It runs the full
ONNX checker (by path, so models with external data and models over 2 GiB are checked too), removes an
old-exporter quirk (initializers also listed as graph inputs, which would otherwise look like extra
inputs to feed) and runs shape inference so later stages see as many shapes as the model allows.

``describe_io(model)`` gives the model's inputs and outputs as manifest :class:`~edge.manifest.TensorSpec`
lists (numpy dtype names, ``-1`` for a dynamic axis).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx

from edge.errors import BuildError, first_line
from edge.manifest import TensorSpec

log = logging.getLogger(__name__)

_TWO_GIB = 2**31
# ModelProto's top-level fields: number -> protobuf wire type (0 varint, 2 length-delimited).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data):
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            return None
    return None


# Files people pass by mistake, by their first bytes.
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt checkpoint is one: export it to ONNX first)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable"),
    (b"\x80\x02", "a Python pickle (a PyTorch checkpoint? export it to ONNX first)"),
    (b"\x80\x04", "a Python pickle (a PyTorch checkpoint? export it to ONNX first)"),
)


def file_kind(data: bytes) -> str | None:
    """What ``data`` is when its first bytes say so (``"a JPEG image"``), else None."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp":
        return "an MP4/MOV video"
    head = data[:512].lstrip()
    if head[:1] in (b"{", b"[") or head.startswith((b"---", b"#", b"<")):
        return "a text file"
    return None


def diagnose_bytes(data: bytes) -> str:
    """Why ``data`` failed to parse as an ONNX ModelProto: ``"truncated ..."`` or ``"not an ONNX model ..."``.

    Walks the top-level protobuf fields: an unknown field or wire type means the file is something else;
    a field running past the end of the file means it was cut short (an interrupted copy or download).
    """
    if not data:
        return "the file is empty"
    kind = file_kind(data)
    if kind is not None:
        return f"not an ONNX model (it is {kind})"
    pos = 0
    while pos < len(data):
        first = pos == 0
        tag = _varint(data, pos)
        if tag is None:
            return f"truncated: the file ends inside a field header at byte {len(data)}"
        key, pos = tag
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire:
            return "not an ONNX model (its bytes are not an ONNX protobuf)" if first else "corrupt ONNX data"
        value = _varint(data, pos)
        if value is None:
            return f"truncated: the file ends inside field {number} at byte {len(data)}"
        length, pos = value
        if wire == 2:
            if pos + length > len(data):
                return f"truncated: a {length}-byte field at byte {pos} runs past the end of the {len(data)}-byte file"
            pos += length
    return "corrupt ONNX data"


def all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Every stored tensor: initializers and tensor attributes, subgraphs included."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
            if attr.HasField("g"):
                tensors.extend(all_tensors(attr.g))
            for sub in attr.graphs:
                tensors.extend(all_tensors(sub))
    return tensors


def _external_files(model: onnx.ModelProto) -> set[str]:
    files = set()
    for tensor in all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return files


PLUGIN_DOMAIN = "edge.nonstandard"


def nonstandard_ops(model: onnx.ModelProto) -> list[str]:
    """Operators in the default ONNX domain that ONNX does not define (TensorRT plugins, typically)."""
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    return sorted(op for op in ops if not onnx.defs.has(op))  # one schema lookup per op type, not per node


def with_plugin_domain(model: onnx.ModelProto, ops: list[str]) -> onnx.ModelProto:
    """A copy whose nonstandard default-domain nodes live in a custom domain (what the checker accepts)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in ops:
            node.domain = PLUGIN_DOMAIN
    out.opset_import.add(domain=PLUGIN_DOMAIN, version=1)
    return out


def lowest_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower ``model.ir_version`` (in place) to the lowest one its opsets need.

    onnx's helpers stamp the newest IR version (14 with onnx 1.23) on every model they touch, while
    ONNX Runtime releases refuse newer IR versions than they know (1.23, the last for Python 3.10 and
    JetPack 6, stops at 11). The opsets, not the stamp, decide what a model uses, so the bundle's ONNX
    and every session the builder opens carry the lowest version that holds them.
    """
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.ir_version > needed:
        model.ir_version = needed
    return model


def load_onnx(path: str | os.PathLike[str], *, infer_shapes: bool = True) -> onnx.ModelProto:
    """Load, check and prepare an ONNX model; a :class:`BuildError` naming the file for anything wrong."""
    p = Path(path)
    if not p.exists():
        raise BuildError(f"{p}: ONNX file not found; give the path of an exported .onnx model")
    if not p.is_file():
        raise BuildError(f"{p}: is a directory, not an ONNX file; give the path of the .onnx model inside it")
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # protobuf's DecodeError: the bytes are not a ModelProto
        why = diagnose_bytes(data)
        hint = (
            "give the path of an exported .onnx model"
            if why.startswith("not an ONNX")
            else "re-export or copy the model again"
        )
        raise BuildError(f"{p}: {why}; {hint}") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        why = diagnose_bytes(data)
        if why == "corrupt ONNX data":
            why = "not an ONNX model (it has no graph)"
        raise BuildError(f"{p}: {why}; give an exported .onnx model")
    missing = sorted(f for f in _external_files(model) if not (p.parent / f).is_file())
    if missing:
        raise BuildError(
            f"{p}: external data file {missing[0]!r} is missing (expected in {p.parent}); copy it next to the model"
        )
    nonstandard = nonstandard_ops(model)
    if _external_files(model):
        onnx.load_external_data_for_model(model, str(p.parent))
    try:
        if nonstandard:
            # TensorRT plugin ops (e.g. EfficientNMS_TRT) often sit in the default ONNX domain, where the
            # checker knows no schema for them: check the rest of the graph with them set aside.
            log.warning(
                "%s: operator(s) %s are not standard ONNX: left to TensorRT (a plugin must provide them); "
                "ONNX Runtime cannot run this model",
                p.name,
                ", ".join(nonstandard),
            )
            onnx.checker.check_model(with_plugin_domain(model, nonstandard), full_check=True)
        else:
            onnx.checker.check_model(str(p), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        first = first_line(exc, type(exc).__name__)
        raise BuildError(f"{p}: the ONNX checker rejects this model: {first}; re-export it") from None
    removed = remove_initializer_inputs(model)
    if removed:
        log.info("%s: removed %d initializers that were also listed as graph inputs", p.name, removed)
    lowest_ir_version(model)  # the bundle's ONNX then loads on older ONNX Runtime releases (JetPack 6)
    if infer_shapes:
        model = infer_model_shapes(model)
    return model


def remove_initializer_inputs(model: onnx.ModelProto) -> int:
    """Drop graph inputs that are initializers (an old-exporter quirk, IR < 4); returns how many were removed.

    Such inputs would otherwise look like tensors the user must feed, and TensorRT treats them as
    runtime inputs instead of weights.
    """
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
        if model.ir_version < 4:
            model.ir_version = 4
    return removed


def infer_model_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference (with data propagation); models over 2 GiB are left as they are (TensorRT infers)."""
    if model.ByteSize() >= _TWO_GIB:
        log.warning("model is over 2 GiB: skipping ONNX shape inference (TensorRT and ONNX Runtime infer their own)")
        return model
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise BuildError(
            f"ONNX shape inference failed: {first_line(exc, type(exc).__name__)}; re-export the model"
        ) from None


def _dims(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim)


def _dtype(value: onnx.ValueInfoProto) -> str:
    elem = value.type.tensor_type.elem_type
    if not value.type.HasField("tensor_type") or elem == onnx.TensorProto.UNDEFINED:
        raise BuildError(f"tensor {value.name!r} is not a typed tensor; the kit supports tensor inputs/outputs only")
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
    except (KeyError, TypeError, ValueError):
        return str(onnx.TensorProto.DataType.Name(elem)).lower()


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (initializers excluded, whatever the IR version)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def describe_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as TensorSpecs: numpy dtype names, ``-1`` for dynamic axes, ``()`` for unknown rank."""
    inputs = [TensorSpec(v.name, _dtype(v), _dims(v)) for v in graph_inputs(model)]
    outputs = [TensorSpec(v.name, _dtype(v), _dims(v)) for v in model.graph.output]
    return inputs, outputs
