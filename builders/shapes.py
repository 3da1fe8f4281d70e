"""Stage 3: input shapes, in trtexec's spelling, and TensorRT optimization profiles.

- :func:`parse_shapes` reads ``input:1x3x480x640,other:1x10`` (a name holding ``:`` may be quoted:
  ``'input:0':1x3x224x224``) into ``{"input": (1, 3, 480, 640), ...}``.
- :func:`fix_shapes` makes inputs static at the given shapes, also re-shaping a model that was exported
  at a fixed odd size; output and intermediate shapes are recomputed and the result is run once through
  ONNX Runtime, so a model whose layers hard-code the old size fails here with a clear message instead of
  deep inside TensorRT.
- :func:`make_profiles` gives every dynamic input a ``{"min", "opt", "max"}`` profile: from the
  ``--min-shapes``/``--opt-shapes``/``--max-shapes`` flags (a missing ``opt`` takes ``max``, else ``min``;
  a missing ``min`` or ``max`` takes ``opt``), else from ``--shapes`` (``min = opt = max``), else from the
  preprocess spec (batch 1, 3 channels, ``preprocess.size``); an input still undetermined is an error that
  names it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from builders.onnx_load import describe_io, graph_inputs, lowest_ir_version, nonstandard_ops
from edge.errors import BuildError, ConfigError, first_line
from edge.manifest import TensorSpec
from edge.spec import PreprocessSpec

log = logging.getLogger(__name__)

Shapes = dict[str, tuple[int, ...]]
Profile = dict[str, tuple[int, ...]]
EXAMPLE = "input:1x3x640x640"


def format_shape(shape: tuple[int, ...]) -> str:
    """``1x3x640x640`` (``-1`` shown as ``?``)."""
    return "x".join("?" if d < 0 else str(d) for d in shape) if shape else "(scalar)"


def parse_shapes(text: str, flag: str = "--shapes") -> Shapes:
    """Parse trtexec's ``name:AxBxC[,name2:...]``; a :class:`ConfigError` naming the bad part."""
    if not text or not text.strip():
        raise ConfigError(f"{flag}: empty; expected NAME:DxDx..., e.g. {EXAMPLE}")
    shapes: Shapes = {}
    for index, raw in enumerate(text.split(",")):
        part = raw.strip()
        if not part:
            raise ConfigError(f"{flag}: entry {index + 1} is empty (stray comma in {text!r})")
        name, sep, dims = part.rpartition(":")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
            name = name[1:-1]
        if not sep or not name:
            raise ConfigError(f"{flag}: {part!r} is not NAME:DxDx... (e.g. {EXAMPLE})")
        values: list[int] = []
        for dim in dims.strip().split("x"):
            if not dim.strip().isdigit() or int(dim) <= 0:
                raise ConfigError(
                    f"{flag}: {part!r}: dimension {dim.strip()!r} is not a positive integer "
                    f"(dimensions are separated by a lowercase x, e.g. {EXAMPLE})"
                )
            values.append(int(dim))
        if name in shapes:
            raise ConfigError(f"{flag}: input {name!r} is given twice")
        shapes[name] = tuple(values)
    return shapes


def _check_names(model_inputs: Mapping[str, TensorSpec], shapes: Mapping[str, tuple[int, ...]], flag: str) -> None:
    for name in shapes:
        if name not in model_inputs:
            raise ConfigError(
                f"{flag}: {name!r} is not an input of the model; its inputs are: {', '.join(model_inputs)}"
            )


def _check_fits(spec: TensorSpec, shape: tuple[int, ...], flag: str, allow_fixed_change: bool) -> None:
    if spec.shape and len(shape) != len(spec.shape):
        raise ConfigError(
            f"{flag}: {spec.name}:{format_shape(shape)} has {len(shape)} dimensions but the model's input "
            f"{spec.name!r} has {len(spec.shape)} ({format_shape(spec.shape)})"
        )
    if not allow_fixed_change:
        for axis, (want, have) in enumerate(zip(shape, spec.shape)):
            if have > 0 and want != have:
                raise ConfigError(
                    f"{flag}: {spec.name}:{format_shape(shape)} sets axis {axis} to {want} but the model fixes it "
                    f"at {have} ({format_shape(spec.shape)}); re-shape the model with --shapes first"
                )


def fix_shapes(
    model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], *, verify: bool = True
) -> onnx.ModelProto:
    """A copy of ``model`` with the given inputs fixed at ``shapes``; outputs follow (shape inference, ORT check)."""
    inputs = {t.name: t for t in describe_io(model)[0]}
    _check_names(inputs, shapes, "--shapes")
    for name, shape in shapes.items():
        _check_fits(inputs[name], tuple(shape), "--shapes", allow_fixed_change=True)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in graph_inputs(out):
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for d in shapes[value.name]:
                dims.add().dim_value = int(d)
    del out.graph.value_info[:]
    for value in out.graph.output:
        value.type.tensor_type.ClearField("shape")
    wanted = ", ".join(f"{n}:{format_shape(tuple(s))}" for n, s in shapes.items())
    try:
        out = onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise BuildError(_reshape_failed(wanted, str(exc))) from None
    if verify:
        verify_runs(out, wanted)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim) for v in model.graph.output if v.type.tensor_type.HasField("shape")
    }
    for value in out.graph.output:  # still unknown (e.g. a plugin's output): keep the rank, axes unknown
        if not value.type.tensor_type.HasField("shape") and value.name in ranks:
            value.type.tensor_type.shape.SetInParent()
            dims = value.type.tensor_type.shape.dim
            for _ in range(ranks[value.name]):
                dims.add()
    return out


def _reshape_failed(wanted: str, detail: str) -> str:
    first = first_line(detail, "unknown error")
    return (
        f"the model does not work at {wanted}: {first}; it was probably exported at a fixed size that its layers "
        "depend on (e.g. a Reshape with constant sizes): re-export it at this size or with dynamic axes"
    )


def ort_error_summary(message: str) -> str:
    """ONNX Runtime's long error text cut to the failing node and the reason."""
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", message)
    reason = message
    for marker in (" was false. ", "Status Message: ", "] : "):
        if marker in reason:
            reason = reason.rsplit(marker, 1)[1]
            break
    reason = first_line(reason, "unknown error")
    return f"node {node.group(2) or '(unnamed)'} ({node.group(1)}): {reason}" if node else reason


def ort_session(model: onnx.ModelProto) -> Any:
    """A quiet CPU ONNX Runtime session for ``model`` (errors are raised, not logged)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    data = lowest_ir_version(model).SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run(session: Any, feeds: dict[str, np.ndarray], wanted: str) -> list[np.ndarray]:
    try:
        return list(session.run(None, feeds))
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(_reshape_failed(wanted, ort_error_summary(str(exc)))) from None


def verify_runs(model: onnx.ModelProto, wanted: str) -> None:
    """Run ``model`` through ONNX Runtime on zeros and on noise (only when every input is static).

    Fails when it does not run or when an output's inferred shape disagrees with what it produces;
    an output that shape inference could not follow gets the shape both runs agree on (``-1`` where
    they differ, i.e. a data-dependent axis such as a count of detections).
    """
    inputs, outputs = describe_io(model)
    if any(t.dynamic or not t.shape for t in inputs) or nonstandard_ops(model):
        log.debug("not verifying with ONNX Runtime: dynamic inputs or operators it does not know")
        return
    try:
        session = ort_session(model)
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(_reshape_failed(wanted, ort_error_summary(str(exc)))) from None
    rng = np.random.default_rng(0)
    zeros = _run(session, {t.name: np.zeros(t.shape, dtype=np.dtype(t.dtype)) for t in inputs}, wanted)
    noise = _run(session, {t.name: _noise(rng, t) for t in inputs}, wanted)
    for spec, value, other, proto in zip(outputs, zeros, noise, model.graph.output):
        if not spec.shape:
            dims = proto.type.tensor_type.shape.dim
            for a, b in zip(value.shape, other.shape):
                dim = dims.add()
                if a == b:
                    dim.dim_value = a
            continue
        if len(spec.shape) != value.ndim or any(d > 0 and d != v for d, v in zip(spec.shape, value.shape)):
            raise BuildError(
                f"output {spec.name!r}: ONNX shape inference says {format_shape(spec.shape)} but ONNX Runtime "
                f"produces {format_shape(tuple(value.shape))} at {wanted}; the model's shapes are inconsistent"
            )


def _noise(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(spec.shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 2, spec.shape).astype(dtype)
    return np.zeros(spec.shape, dtype=dtype)


def default_shape(spec: TensorSpec, preprocess: PreprocessSpec | None = None) -> tuple[int, ...] | None:
    """Fill a dynamic input's ``-1`` axes: batch 1, channels 3, height/width from ``preprocess.size``; else None."""
    shape = list(spec.shape)
    if not shape:
        return None
    if shape[0] < 0:
        shape[0] = 1
    if len(shape) == 4:
        layout = preprocess.layout if preprocess is not None else "nchw"
        c, h, w = (1, 2, 3) if layout == "nchw" else (3, 1, 2)
        if shape[c] < 0:
            shape[c] = 3
        if preprocess is not None and preprocess.size is not None:
            shape[h] = shape[h] if shape[h] > 0 else preprocess.size[0]
            shape[w] = shape[w] if shape[w] > 0 else preprocess.size[1]
    return tuple(shape) if all(d > 0 for d in shape) else None


def make_profiles(
    model: onnx.ModelProto,
    min_shapes: Mapping[str, tuple[int, ...]] | None = None,
    opt_shapes: Mapping[str, tuple[int, ...]] | None = None,
    max_shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    preprocess: PreprocessSpec | None = None,
) -> dict[str, Profile]:
    """One ``{"min", "opt", "max"}`` profile per dynamic input (static inputs need none); see the module doc."""
    inputs = {t.name: t for t in describe_io(model)[0]}
    given = {"min": dict(min_shapes or {}), "opt": dict(opt_shapes or {}), "max": dict(max_shapes or {})}
    for key, table in given.items():
        _check_names(inputs, table, f"--{key}-shapes")
    _check_names(inputs, shapes or {}, "--shapes")
    profiles: dict[str, Profile] = {}
    for name, spec in inputs.items():
        mine = {k: tuple(v[name]) for k, v in given.items() if name in v}
        if not spec.dynamic:
            for key, shape in mine.items():
                if shape != spec.shape:
                    raise ConfigError(
                        f"--{key}-shapes: input {name!r} is fixed at {format_shape(spec.shape)} in the model, "
                        f"not {format_shape(shape)}; re-shape it with --shapes {name}:{format_shape(shape)}"
                    )
            continue
        if not mine:
            fallback = tuple(shapes[name]) if shapes and name in shapes else default_shape(spec, preprocess)
            if fallback is None:
                raise ConfigError(
                    f"input {name!r} has dynamic axes ({format_shape(spec.shape)}) and no shape was given: add "
                    f"--shapes {name}:..., or --min-shapes/--opt-shapes/--max-shapes {name}:..."
                )
            mine = {"opt": fallback}
        for key, shape in mine.items():
            flag = f"--{key}-shapes" if name in given[key] else "--shapes"
            _check_fits(spec, shape, flag, allow_fixed_change=False)
        opt = mine.get("opt") or mine.get("max") or mine["min"]
        profile = {"min": mine.get("min", opt), "opt": opt, "max": mine.get("max", opt)}
        for axis in range(len(opt)):
            lo, mid, hi = profile["min"][axis], profile["opt"][axis], profile["max"][axis]
            if not lo <= mid <= hi:
                raise ConfigError(
                    f"input {name!r} axis {axis}: needs min <= opt <= max, got {lo}, {mid}, {hi} "
                    f"(min {format_shape(profile['min'])}, opt {format_shape(profile['opt'])}, "
                    f"max {format_shape(profile['max'])})"
                )
        profiles[name] = profile
    return profiles
