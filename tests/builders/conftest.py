"""Shared fixtures for the builder tests: real models written to tmp files (RetinaFace, the onnx
package's light ResNet-50 / SqueezeNet with a dynamic batch axis, a graph TensorRT-RTX cannot parse)
and scikit-image photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

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


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def retinaface_onnx(models_dir: Path) -> Path:
    from retinaface.weights import WEIGHTS

    path = models_dir / "retinaface.onnx"
    path.write_bytes(WEIGHTS)
    return path


@pytest.fixture(scope="session")
def resnet50_onnx(models_dir: Path) -> Path:
    path = models_dir / "resnet50-light.onnx"
    onnx.save(light_model_dynamic_batch("resnet50"), str(path))
    return path


@pytest.fixture(scope="session")
def squeezenet_onnx(models_dir: Path) -> Path:
    path = models_dir / "squeezenet-light.onnx"
    onnx.save(light_model_dynamic_batch("squeezenet"), str(path))
    return path


def unsupported_op_model() -> onnx.ModelProto:
    """Relu then Det: valid ONNX that ONNX Runtime runs but TensorRT-RTX cannot import (node ``det_node``)."""
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    nodes = [oh.make_node("Relu", ["x"], ["r"], name="relu0"), oh.make_node("Det", ["r"], ["y"], name="det_node")]
    return oh.make_model(oh.make_graph(nodes, "det", [x], [y]), opset_imports=[oh.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def unsupported_onnx(models_dir: Path) -> Path:
    path = models_dir / "det.onnx"
    onnx.save(unsupported_op_model(), str(path))
    return path


@pytest.fixture(scope="session")
def photos_dir(models_dir: Path) -> Path:
    """A folder of real photos from scikit-image (astronaut, camera, chelsea, coffee, ...)."""
    import shutil

    import skimage

    src = Path(skimage.__file__).parent / "data"
    out = models_dir / "photos"
    out.mkdir()
    for name in ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"):
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    return out
