"""Stage 2: graph simplification with onnxslim (constant folding, dead-node removal, fusions).

Why onnxslim and not onnxsim: see ``docs/build.md`` "Simplifier choice" (same results on the test
models, fewer nodes, and a pure-Python wheel that installs on Jetson, where onnxsim has no wheel).

A simplifier is an optimisation, never a reason to fail a build: any exception, an output that no longer
matches the original through ONNX Runtime, or a broken graph falls back to the unsimplified model with a
warning, and the manifest records ``simplifier: null``.

Cheap first: :func:`simplify_work` scans the graph for anything onnxslim would change (constants to fold,
Constant/Identity nodes, BatchNormalization to fuse, back-to-back reshapes, dead or duplicate nodes); a
graph with none (an export its exporter already simplified, e.g. Ultralytics') skips onnxslim and its
imports altogether.
"""

from __future__ import annotations

import logging
import time
from importlib import metadata

import numpy as np
import onnx

from builders.onnx_load import all_tensors, describe_io
from builders.progress_bar import ProgressBar
from builders.shapes import ort_error_summary, ort_session
from edge.errors import first_line

log = logging.getLogger(__name__)

RTOL = 1e-3
ATOL = 1e-4
# Constant folding never materialises a tensor larger than this or than the largest tensor the model
# already stores (see fold_limit).
FOLD_FLOOR_BYTES = 4 << 20
NOTHING_TO_SIMPLIFY = "nothing to simplify"
TIDY = "edge tidy"  # the manifest's builder.simplifier when only the kit's own tidy pass changed the graph


def simplifier_name() -> str | None:
    """``"onnxslim 0.1.98"``, or None when onnxslim is not installed (read from its metadata: no import)."""
    try:
        return f"onnxslim {metadata.version('onnxslim')}"
    except metadata.PackageNotFoundError:
        return None


# Ops onnxslim removes or fuses into a neighbour wherever they appear.
_REMOVABLE = ("Constant", "Identity", "Dropout", "BatchNormalization")
# Back-to-back pairs it merges.
_CHAINS = {
    ("Reshape", "Reshape"),
    ("Transpose", "Transpose"),
    ("Cast", "Cast"),
    ("Squeeze", "Unsqueeze"),
    ("Unsqueeze", "Squeeze"),
    ("Pad", "Conv"),
    ("Pad", "AveragePool"),
    ("Pad", "MaxPool"),
    ("Flatten", "Reshape"),
    ("Reshape", "Flatten"),
    ("MatMul", "Add"),
}


def _static(value: onnx.ValueInfoProto) -> bool:
    t = value.type.tensor_type
    return t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim)


def simplify_work(model: onnx.ModelProto) -> str | None:
    """The first thing onnxslim would change in ``model`` (``"12 Constant nodes"``), or None: nothing to do."""
    graph = model.graph
    if any(n.domain not in ("", "ai.onnx") or any(a.type in (5, 10) for a in n.attribute) for n in graph.node):
        return "subgraphs or custom-domain nodes (left to onnxslim)"
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in _REMOVABLE:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if counts:
        op, n = max(counts.items(), key=lambda kv: kv[1])
        return f"{n} {op} node(s)"
    const = {t.name for t in graph.initializer}
    static = {v.name for v in (*graph.input, *graph.value_info, *graph.output) if _static(v)}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    seen: set[tuple[str, tuple[str, ...], bytes]] = set()
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if inputs and all(i in const for i in inputs):
            return f"node {node.name or node.op_type} ({node.op_type}) computes a constant"
        if node.op_type in ("Shape", "Size") and inputs and inputs[0] in static:
            return f"node {node.name or node.op_type} ({node.op_type}) of a static shape"
        for name in inputs:
            readers[name] = readers.get(name, 0) + 1
            before = producer.get(name)
            if before is not None and (before.op_type, node.op_type) in _CHAINS:
                return f"{before.op_type} -> {node.op_type}"
        key = (node.op_type, tuple(node.input), b"".join(a.SerializeToString() for a in node.attribute))
        if key in seen:
            return f"duplicate {node.op_type} nodes"
        seen.add(key)
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if not any(o in outputs or readers.get(o) for o in node.output):
            return f"node {node.name or node.op_type} ({node.op_type}) is unused"
    if any(t.name not in readers and t.name not in outputs for t in graph.initializer):
        return "unused initializers"
    return None


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


def tidy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The kit's own cheap clean-up (milliseconds, no imports): Constant nodes become initializers,
    Identity and inference-time Dropout nodes are bypassed, dead nodes and unused initializers go.
    Returns the model (a copy when anything changed) and how many nodes were removed."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    inner = {i for n in graph.node for a in n.attribute if a.type in (5, 10) for i in _reads(a)}
    constants, bypass = set(), set()
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or any(a.type in (5, 10) for a in node.attribute):
            continue
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            constants.add(index)
        elif node.op_type in ("Identity", "Dropout") and node.input and node.input[0]:
            extra = [*node.output[1:], *node.input[1:]]
            if not any(extra) and node.output[0] not in outputs and node.output[0] not in inner:
                bypass.add(index)
    if not constants and not bypass and not _dead(graph):
        return model, 0
    out = _copy(model)
    graph = out.graph
    rename: dict[str, str] = {}
    keep = []
    for index, node in enumerate(graph.node):
        if index in constants:
            tensor = graph.initializer.add()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
        elif index in bypass:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)
    while dead := _dead(graph):
        alive = [n for i, n in enumerate(graph.node) if i not in dead]
        del graph.node[:]
        graph.node.extend(alive)
    produced = {o for n in graph.node for o in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    if len(infos) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(infos)
    read = {i for n in graph.node for i in n.input} | outputs | inner
    used = [t for t in graph.initializer if t.name in read]
    if len(used) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(used)
    return out, len(model.graph.node) - len(graph.node)


def _reads(attr: onnx.AttributeProto) -> set[str]:
    graphs = [attr.g] if attr.type == 5 else list(attr.graphs)
    names: set[str] = set()
    for g in graphs:
        for n in g.node:
            names.update(n.input)
            for a in n.attribute:
                if a.type in (5, 10):
                    names |= _reads(a)
    return names


def _dead(graph: onnx.GraphProto) -> set[int]:
    """Indices of the nodes none of whose outputs is read or a graph output."""
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    read |= {i for n in graph.node for a in n.attribute if a.type in (5, 10) for i in _reads(a)}
    return {index for index, n in enumerate(graph.node) if not any(o and o in read for o in n.output)}


def simplify(model: onnx.ModelProto, *, verify: bool = True, slim: bool = True) -> tuple[onnx.ModelProto, str | None]:
    """The tidy pass, then onnxslim when ``slim`` and anything is left for it to do.

    ``(model, "edge tidy")`` when only the tidy pass ran (``slim=False`` or nothing left), ``(model,
    "onnxslim VERSION")`` after onnxslim, ``(model, None)`` when the tidy pass changed nothing and onnxslim
    did not run or failed (with a warning)."""
    model, removed = tidy(model)
    if removed:
        log.info("tidy: %d Constant/Identity/Dropout/dead node(s) removed", removed)
    tidied = TIDY if removed else None
    work = simplify_work(model)
    if work is None:
        log.info("simplifier: %s after the tidy pass, onnxslim skipped", NOTHING_TO_SIMPLIFY)
        return model, tidied
    if not slim:
        log.info("simplifier: onnxslim skipped for fp32 (left to TensorRT/ONNX Runtime: %s; --simplify runs it)", work)
        return model, tidied
    name = simplifier_name()
    if name is None:
        log.warning("onnxslim is not installed: building from the unsimplified model (pip install onnxslim)")
        return model, tidied
    start = time.perf_counter()
    with ProgressBar(None, f"simplify ({name})") as bar:
        bar.set_phase("import")
        import onnxslim

        bar.set_phase(f"slim: {work}")
        try:
            slim = onnxslim.slim(_copy(model), size_threshold=fold_limit(model))
            if not isinstance(slim, onnx.ModelProto):
                raise TypeError(f"onnxslim returned {type(slim).__name__}, not a model")
            bar.set_phase("check")
            onnx.checker.check_model(slim)
        except Exception as exc:  # a third-party optimiser: any failure means "use the original"
            detail = first_line(exc, type(exc).__name__)
            log.warning("%s failed (%s); building from the unsimplified model", name, detail)
            return model, tidied
        bar.set_phase("verify with ONNX Runtime")
        problem = outputs_agree(model, slim) if verify else None
    if problem is not None:
        log.warning("%s result rejected (%s); building from the unsimplified model", name, problem)
        return model, tidied
    log.info(
        "%s: %d -> %d nodes in %.1f s", name, len(model.graph.node), len(slim.graph.node), time.perf_counter() - start
    )
    return slim, name
