"""Real models the tests and benchmarks share (a small registry, so both build the same inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper as onh

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_model_dynamic_batch(name: str) -> onnx.ModelProto:
    """``light_<name>.onnx`` with its batch axis made dynamic (``N``).

    The light models store weights as ConstantOfShape nodes and list their shape initializers as graph
    inputs (IR 3): those inputs are dropped; ResNet-50's final Reshape hard-codes batch 1 (``[1, 2048]``),
    rewritten to ``[-1, 2048]``.
    """
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    for t in model.graph.initializer:
        if t.name == "OC2_DUMMY_1":
            t.CopyFrom(onh.from_array(np.array([-1, 2048], dtype=np.int64), t.name))
    return model
