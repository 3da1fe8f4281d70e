"""FP16 conversion that leaves shape and index computation alone (the kit's own, see ``docs/build.md``).

Only float compute is converted. A node stays as it is (FP32) when it is:

- part of the shape subgraph: every output depends on nothing but weights, constants and ``Shape``/``Size``
  (anchor grids built with ``Range`` from the input size, strides, the float steps between them);
- an index computation: a ``Cast`` from float to an integer type and the scalar/1-D float arithmetic
  feeding it;
- in ``block_ops`` or ``block_nodes`` (ops that overflow FP16, nodes the range check flagged), outside the
  default ONNX domain (TensorRT plugins), or holding a subgraph (``If``, ``Loop``, ``Scan``) or feeding one.

Which inputs and outputs of a converted node become FP16 follows the operator's ONNX schema: an input or
output whose type parameter allows ``float16`` and that carries ``float`` (``Resize``'s ``scales``, ``Range``,
``TopK``'s ``K``, any integer tensor keep their types). Casts join converted and unconverted parts; weights
read by converted nodes are stored in FP16 (clipped to FP16's range), a weight also read by an FP32 node
keeps an FP32 copy. Float inputs and outputs stay FP32 unless ``keep_io_types`` is False.

The result is checked with ONNX Runtime; a node that ONNX Runtime has no FP16 kernel for is kept in FP32
and the conversion repeated (the error names it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

log = logging.getLogger(__name__)

FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
FP16_MAX = 65504.0
INT_TYPES = frozenset(
    {
        onnx.TensorProto.INT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    }
)
SHAPE_SOURCES = ("Shape", "Size")
RANDOM_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")
MAX_RETRIES = 8
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'")


@dataclass
class Signature:
    """A node's formal types: per input/output the schema's type parameter (None: a fixed type)."""

    inputs: list[str | None]
    outputs: list[str | None]
    allowed: dict[str, frozenset[str]]

    def half(self, param: str | None) -> bool:
        return param is not None and "tensor(float16)" in self.allowed.get(param, frozenset())


@dataclass
class Plan:
    """What the conversion decided: the nodes kept in FP32 (by reason) and the tensor types after it."""

    kept: dict[str, str] = field(default_factory=dict)  # node name -> reason
    converted: list[str] = field(default_factory=list)
    types: dict[str, int] = field(default_factory=dict)  # tensor -> elem type after conversion


def _formal(params: Sequence[onnx.defs.OpSchema.FormalParameter], index: int, allowed: Collection[str]) -> str | None:
    if not params:
        return None
    if index >= len(params):
        last = params[-1]
        if last.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            return None
        param = last
    else:
        param = params[index]
    return param.type_str if param.type_str in allowed else None


def signature(node: onnx.NodeProto, opset: int) -> Signature | None:
    """The schema's type parameters of ``node``; None for an operator ONNX does not define (a plugin)."""
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None
    allowed = {c.type_param_str: frozenset(c.allowed_type_strs) for c in schema.type_constraints}
    return Signature(
        [_formal(schema.inputs, i, allowed) for i in range(len(node.input))],
        [_formal(schema.outputs, i, allowed) for i in range(len(node.output))],
        allowed,
    )


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read (outer-scope tensors among them), recursively."""
    names: set[str] = set()
    graphs = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    graphs += [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    for graph in graphs:
        for inner in graph.node:
            names.update(i for i in inner.input if i)
            names |= subgraph_reads(inner)
    return names


def _constant_type(node: onnx.NodeProto) -> int | None:
    value = _attr(node, "value")
    if value is not None:
        return int(value.t.data_type)
    if _attr(node, "value_float") is not None or _attr(node, "value_floats") is not None:
        return FLOAT
    if _attr(node, "value_int") is not None or _attr(node, "value_ints") is not None:
        return onnx.TensorProto.INT64
    return None


def tensor_types(model: onnx.ModelProto, opset: int) -> dict[str, int]:
    """Element type of every tensor: what shape inference recorded, the rest from the operators' schemas."""
    graph = model.graph
    types: dict[str, int] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        elem = value.type.tensor_type.elem_type
        if value.type.HasField("tensor_type") and elem:
            types[value.name] = elem
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            elem = _constant_type(node)
            if elem is not None:
                types.setdefault(node.output[0], elem)
            continue
        missing = [o for o in node.output if o and o not in types]
        if not missing:
            continue
        sig = signature(node, opset)
        if sig is None:
            continue
        bound = {p: types[i] for p, i in zip(sig.inputs, node.input) if p is not None and i in types}
        for param, name in zip(sig.outputs, node.output):
            if not name or name in types:
                continue
            if node.op_type == "Cast" and (to := _attr(node, "to")) is not None:
                types[name] = int(to.i)
            elif param in bound:
                types[name] = bound[param]
            elif param is not None and len(sig.allowed[param]) == 1:
                elem = _type_from_str(next(iter(sig.allowed[param])))
                if elem is not None:
                    types[name] = elem
    return types


def _type_from_str(text: str) -> int | None:
    match = re.fullmatch(r"tensor\((\w+)\)", text)
    if match is None:
        return None
    name = {"float": "FLOAT", "double": "DOUBLE", "float16": "FLOAT16"}.get(match.group(1), match.group(1).upper())
    try:
        return int(onnx.TensorProto.DataType.Value(name))
    except ValueError:
        return None


def shape_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors that depend on nothing but weights, constants and tensor shapes (the shape subgraph)."""
    graph = model.graph
    const = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type in RANDOM_OPS or has_subgraph(node):
            continue
        inputs = [i for i in node.input if i]
        if node.op_type in SHAPE_SOURCES or node.op_type == "Constant" or (inputs and all(i in const for i in inputs)):
            const.update(o for o in node.output if o)
    return const


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    out = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        t = value.type.tensor_type
        if value.type.HasField("tensor_type") and t.HasField("shape"):
            out[value.name] = len(t.shape.dim)
    return out


def index_nodes(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Float -> integer Casts and the scalar/1-D float arithmetic feeding them (index computation)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    ranks = _ranks(model)
    found: set[str] = set()
    stack: list[str] = []
    for node in graph.node:
        to = _attr(node, "to")
        if node.op_type == "Cast" and to is not None and to.i in INT_TYPES and types.get(node.input[0]) == FLOAT:
            found.add(node.name)
            stack.append(node.input[0])
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None or types.get(name) != FLOAT or ranks.get(name, 99) > 1:
            continue
        found.add(node.name)
        stack.extend(i for i in node.input if i)
    return found


def plan_conversion(
    model: onnx.ModelProto, block_ops: Collection[str] = (), block_nodes: Collection[str] = ()
) -> tuple[Plan, dict[str, int]]:
    """Decide which nodes run in FP16; the plan and the original tensor types."""
    opset = _opset(model)
    types = tensor_types(model, opset)
    shape = shape_tensors(model)
    index = index_nodes(model, types)
    producer = {o: n.name for n in model.graph.node for o in n.output if o}
    feeds_subgraph = {
        producer[t] for n in model.graph.node if has_subgraph(n) for t in subgraph_reads(n) if t in producer
    }
    plan = Plan(types=dict(types))
    blocked_ops, blocked_nodes = set(block_ops), set(block_nodes)
    for node in model.graph.node:
        sig = signature(node, opset)
        outputs = [o for o in node.output if o]
        reason = None
        if sig is None:
            reason = "not a standard ONNX operator"
        elif has_subgraph(node) or node.name in feeds_subgraph:
            reason = "subgraph"
        elif node.op_type in blocked_ops:
            reason = "op kept in fp32"
        elif node.name in blocked_nodes:
            reason = "out of fp16 range"
        elif outputs and all(o in shape for o in outputs):
            reason = "shape computation"
        elif node.name in index:
            reason = "index computation"
        if reason is not None:
            plan.kept[node.name] = reason
            continue
        assert sig is not None
        converted_params = {p for p, i in zip(sig.inputs, node.input) if i and sig.half(p) and types.get(i) == FLOAT}
        changed = False
        for param, name in zip(sig.outputs, node.output):
            if not name:
                continue
            if node.op_type == "Cast":
                to = _attr(node, "to")
                if to is not None and to.i == FLOAT:
                    plan.types[name] = HALF
                    changed = True
            elif param in converted_params or (
                node.op_type == "ConstantOfShape" and types.get(name) == FLOAT and sig.half(param)
            ):
                plan.types[name] = HALF
                changed = True
        if changed or converted_params:
            plan.converted.append(node.name)
    return plan, types


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _half_array(values: np.ndarray) -> tuple[np.ndarray, int]:
    clipped = int(np.count_nonzero(np.abs(values) > FP16_MAX))
    return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16), clipped


def _constant_array(node: onnx.NodeProto) -> np.ndarray | None:
    value = _attr(node, "value")
    if value is not None:
        return numpy_helper.to_array(value.t)
    scalar = _attr(node, "value_float")
    if scalar is not None:
        return np.array(scalar.f, np.float32)
    floats = _attr(node, "value_floats")
    if floats is not None:
        return np.array(list(floats.floats), np.float32)
    return None


def apply_plan(
    model: onnx.ModelProto, plan: Plan, types: dict[str, int], *, keep_io_types: bool = True
) -> onnx.ModelProto:
    """A new model with ``plan`` carried out (Casts between the parts, FP16 weights)."""
    graph = model.graph
    opset = _opset(model)
    converted = set(plan.converted)
    new_types = dict(plan.types)
    inits = {t.name: t for t in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    names = {o for n in graph.node for o in n.output} | set(inits) | {i.name for i in graph.input}

    def unique(base: str) -> str:
        name = base
        while name in names:
            name += "_"
        names.add(name)
        return name

    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    tail: dict[str, list[onnx.NodeProto]] = {}  # producer name -> Casts that give outputs their I/O type
    io_type = FLOAT if keep_io_types else HALF  # the type every float32 graph output ends up with
    types = dict(types)
    for node in graph.node:
        for name in node.output:
            if name not in outputs or types.get(name) != FLOAT or new_types.get(name) == io_type:
                continue
            inner = unique(f"{name}_{'fp16' if io_type == FLOAT else 'fp32'}")
            rename[name] = inner
            types[inner] = FLOAT
            new_types[inner] = new_types.get(name, FLOAT)
            new_types[name] = io_type
            cast = onnx.helper.make_node("Cast", [inner], [name], name=unique(f"{name}_cast"), to=io_type)
            tail.setdefault(node.name, []).append(cast)

    new_inits: list[onnx.TensorProto] = []
    casts: dict[tuple[str, int], str] = {}
    clipped = 0
    nodes: list[onnx.NodeProto] = []

    def as_type(name: str, elem: int) -> str:
        nonlocal clipped
        key = (name, elem)
        if key in casts:
            return casts[key]
        source = inits.get(name)
        values = numpy_helper.to_array(source) if source is not None else None
        if values is None and name in constants:
            values = _constant_array(constants[name])
        if values is not None and values.dtype.kind == "f":
            if elem == HALF:
                values, n = _half_array(values)
                clipped += n
            else:
                values = values.astype(np.float32)
            out = unique(f"{name}_fp16" if elem == HALF else f"{name}_fp32")
            new_inits.append(numpy_helper.from_array(values, out))
        else:
            out = unique(f"{name}_fp16" if elem == HALF else f"{name}_fp32")
            nodes.append(onnx.helper.make_node("Cast", [name], [out], name=unique(out + "_cast"), to=elem))
        new_types[out] = elem
        casts[key] = out
        return out

    if not keep_io_types:
        for value in graph.input:
            if types.get(value.name) == FLOAT and value.name not in inits:
                new_types[value.name] = HALF
                value.type.tensor_type.elem_type = HALF

    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        sig = signature(node, opset) if node.name in converted else None
        half_params = (
            {p for p, i in zip(sig.inputs, node.input) if i and sig.half(p) and types.get(i) == FLOAT} if sig else set()
        )
        for index, name in enumerate(node.input):
            if not name:
                continue
            name = rename.get(name, name)
            current = new_types.get(name)
            if sig is not None:
                param = sig.inputs[index] if index < len(sig.inputs) else None
                want = HALF if param in half_params else (types.get(name) if current in (FLOAT, HALF) else current)
            else:
                want = types.get(name) if current in (FLOAT, HALF) else current
            if want in (FLOAT, HALF) and current in (FLOAT, HALF) and want != current:
                name = as_type(name, want)
            node.input[index] = name
        for index, name in enumerate(node.output):
            node.output[index] = rename.get(name, name)
        if sig is not None:
            to = _attr(node, "to")
            if node.op_type == "Cast" and to is not None and to.i == FLOAT:
                to.i = HALF
            value = _attr(node, "value")
            if node.op_type == "ConstantOfShape" and value is not None and value.t.data_type == FLOAT:
                value.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(value.t).astype(np.float16), value.t.name)
                )
        nodes.append(node)
        nodes.extend(tail.get(original.name, []))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    # Weights read only as FP16 now are stored once, in FP16; others keep their FP32 value.
    read = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    read |= {t for n in nodes if has_subgraph(n) for t in subgraph_reads(n)}
    # A weight read only in FP16 now keeps its name, stored once in FP16.
    back: dict[str, str] = {}
    for (name, elem), twin in casts.items():
        if elem == HALF and name in inits and name not in read and name not in back.values():
            back[twin] = name
    for node in nodes:
        for index, name in enumerate(node.input):
            if name in back:
                node.input[index] = back[name]
    for tensor in new_inits:
        if tensor.name in back:
            tensor.name = back[tensor.name]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    kept_inits = [t for t in graph.initializer if t.name in read]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept_inits + new_inits)
    for value in out.graph.value_info:
        new_elem = new_types.get(value.name)
        if new_elem is not None and value.type.HasField("tensor_type"):
            value.type.tensor_type.elem_type = new_elem
    for value in out.graph.output:
        if types.get(value.name) == FLOAT:
            value.type.tensor_type.elem_type = io_type
    if clipped:
        log.info("fp16: %d weight value(s) beyond FP16's range clipped to +-65504", clipped)
    return out


def convert_float_to_half(
    model: onnx.ModelProto,
    *,
    block_ops: Iterable[str] = (),
    block_nodes: Iterable[str] = (),
    keep_io_types: bool = True,
) -> tuple[onnx.ModelProto, Plan]:
    """``model`` with float compute in FP16 (see the module doc); every node must have a unique name."""
    plan, types = plan_conversion(model, tuple(block_ops), tuple(block_nodes))
    return apply_plan(model, plan, types, keep_io_types=keep_io_types), plan


def missing_kernel(message: str) -> tuple[str, str] | None:
    """``(op, node name)`` from ONNX Runtime's "Could not find an implementation" error, else None."""
    match = _NO_KERNEL.search(message)
    return (match.group(1), match.group(2)) if match else None
