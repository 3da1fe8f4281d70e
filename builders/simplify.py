"""Stage 2: graph simplification with onnxslim (constant folding, dead-node removal, fusions).

Why onnxslim and not onnxsim: see ``docs/build.md`` "Simplifier choice" (same results on the test
models, fewer nodes, and a pure-Python wheel that installs on Jetson, where onnxsim has no wheel).

A simplifier is an optimisation, never a reason to fail a build: any exception, an output that no longer
matches the original through ONNX Runtime, or a broken graph falls back to the unsimplified model with a
warning, and the manifest records ``simplifier: null``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnx

from builders.onnx_load import all_tensors, describe_io
from builders.shapes import ort_error_summary, ort_session
from edge.errors import first_line

log = logging.getLogger(__name__)

RTOL = 1e-3
ATOL = 1e-4
# Constant folding never materialises a tensor larger than this or than the largest tensor the model
# already stores (see fold_limit).
FOLD_FLOOR_BYTES = 4 << 20


def simplifier_name() -> str | None:
    """``"onnxslim 0.1.98"``, or None when onnxslim is not installed."""
    try:
        import onnxslim
    except ImportError:
        return None
    return f"onnxslim {onnxslim.__version__}"


def fold_limit(model: onnx.ModelProto) -> int:
    """The largest tensor (bytes) constant folding may create: the model's largest stored tensor, at least 4 MiB.

    Folding a transform of a stored weight (Transpose, a BatchNorm scale, a Cast) stays within that
    bound. A bigger result is data generated from next to nothing (``ConstantOfShape``, ``Expand``,
    ``Tile`` of a small constant, as in the ONNX "light" models, whose ResNet-50 would grow from 66 kB to
    100 MB and take the builder's memory from ~0.3 to ~0.9 GB): TensorRT and ONNX Runtime compute it
    at build or load time just as well, so it stays a node.
    """
    largest = 0
    for tensor in all_tensors(model.graph):
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 1
        largest = max(largest, int(np.prod(tensor.dims, dtype=np.int64)) * itemsize)
    return max(FOLD_FLOOR_BYTES, largest)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def outputs_agree(
    reference: onnx.ModelProto, candidate: onnx.ModelProto, *, rtol: float = RTOL, atol: float = ATOL
) -> str | None:
    """Run both models on the same random inputs; None when all outputs agree, else why not.

    Only models whose inputs are all static are compared (a dynamic model returns None: nothing to feed).
    """
    inputs = describe_io(reference)[0]
    if any(t.dynamic or not t.shape for t in inputs):
        return None
    rng = np.random.default_rng(0)
    feeds = {
        t.name: (rng.standard_normal(t.shape) if np.dtype(t.dtype).kind == "f" else np.zeros(t.shape)).astype(t.dtype)
        for t in inputs
    }
    try:
        ref = ort_session(reference).run(None, feeds)
    except Exception as exc:  # ORT raises its own untyped exception family
        return f"unverifiable: ONNX Runtime cannot run the original ({ort_error_summary(str(exc))})"
    try:
        got = ort_session(candidate).run(None, feeds)
    except Exception as exc:  # ORT raises its own untyped exception family
        return f"ONNX Runtime cannot run the simplified model: {ort_error_summary(str(exc))}"
    for spec, a, b in zip(describe_io(reference)[1], ref, got):
        if a.shape != b.shape:
            return f"output {spec.name!r} changed shape from {a.shape} to {b.shape}"
        if a.dtype.kind == "f" and not np.allclose(
            a, b, rtol=rtol, atol=atol * max(1.0, float(np.abs(a).max(initial=0)))
        ):
            return f"output {spec.name!r} differs by up to {float(np.abs(a - b).max()):.3g}"
        if a.dtype.kind != "f" and not np.array_equal(a, b):
            return f"output {spec.name!r} differs"
    return None


def simplify(model: onnx.ModelProto, *, verify: bool = True) -> tuple[onnx.ModelProto, str | None]:
    """``(simplified model, "onnxslim VERSION")``, or ``(model, None)`` with a warning when it cannot help."""
    name = simplifier_name()
    if name is None:
        log.warning("onnxslim is not installed: building from the unsimplified model (pip install onnxslim)")
        return model, None
    import onnxslim

    start = time.perf_counter()
    try:
        slim = onnxslim.slim(_copy(model), size_threshold=fold_limit(model))
        if not isinstance(slim, onnx.ModelProto):
            raise TypeError(f"onnxslim returned {type(slim).__name__}, not a model")
        onnx.checker.check_model(slim)
    except Exception as exc:  # a third-party optimiser: any failure means "use the original"
        detail = first_line(exc, type(exc).__name__)
        log.warning("%s failed (%s); building from the unsimplified model", name, detail)
        return model, None
    problem = outputs_agree(model, slim) if verify else None
    if problem is not None:
        log.warning("%s result rejected (%s); building from the unsimplified model", name, problem)
        return model, None
    log.info(
        "%s: %d -> %d nodes in %.1f s", name, len(model.graph.node), len(slim.graph.node), time.perf_counter() - start
    )
    return slim, name
