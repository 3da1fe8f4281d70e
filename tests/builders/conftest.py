"""Shared fixtures for the builder tests: real models written to tmp files (RetinaFace, the onnx
package's light ResNet-50 / SqueezeNet with a dynamic batch axis, a graph TensorRT-RTX cannot parse)
and scikit-image photos."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.helper as oh
import pytest

from tests.models import light_model_dynamic_batch


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
