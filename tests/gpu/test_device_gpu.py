"""What only a GPU can show (issue 10): CUDA streams and graphs, two backends at once, shape changes, the
TensorRT-RTX runtime cache and JIT, CUDA graphs in TensorRT-RTX, doctor against ONNX Runtime, every GPU of
a multi-GPU box. Skipped, with the reason, where no CUDA device answers.

The GPU backend under test is the best this machine has for the bundle ``edge build --target auto`` made:
a TensorRT-RTX or classic TensorRT plan where the library runs, else ONNX Runtime's CUDA provider. CUDA
graphs are checked with cuda-bindings (copies) and CuPy (a kernel) wherever TensorRT is absent.
Run: ``pytest tests/gpu -m gpu`` (scripts/gpu_check.sh does, and reports the timings).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge.backends import cuda
from tests.gpu.conftest import YOLO_CLS, build_bundle, requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]


def gpu_backend(bundle: Path) -> str:
    """The GPU backend the runtime picks for ``bundle`` here, or a skip saying why there is none."""
    from edge.runtime import detect_facts
    from edge.runtime.bundle import Bundle
    from edge.runtime.select import select_artifact

    choice = select_artifact(detect_facts(), Bundle.open(bundle).manifest.artifacts)
    if choice.label == "onnxruntime-cpu":
        why = "; ".join(f"{f}: {w}" for f, w in choice.skipped) or "no plan and no ONNX Runtime CUDA provider"
        pytest.skip(f"no GPU backend for this bundle here ({why})")
    return choice.label


def close_to(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], rtol: float = 2e-2) -> None:
    """Every output within ``1e-3 + rtol * max|ref|`` of the reference (doctor's rule)."""
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape, name
        err = float(np.abs(g.astype(np.float64) - r).max()) if r.size else 0.0
        assert err <= 1e-3 + rtol * float(np.abs(r).max()), f"{name}: max abs error {err}"


def feeds(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(seed).random(shape, dtype=np.float32)}


# ---- CUDA streams and graphs ------------------------------------------------------------------------------
def test_two_streams_carry_their_own_data() -> None:
    streams = [cuda.Stream(), cuda.Stream()]
    bufs = [cuda.TensorBuffers(np.dtype(np.float32)) for _ in streams]
    data = [np.full((3, 1000), i + 1, np.float32) for i in range(2)]
    try:
        for buf, arr in zip(bufs, data):
            buf.ensure(arr.shape)
            np.copyto(buf.array(), arr)
        for buf, stream in zip(bufs, streams):
            buf.to_device(stream)
        for buf in bufs:
            buf.array()[:] = 0
        for buf, stream in zip(bufs, streams):
            buf.to_host(stream)
        for buf, stream, arr in zip(bufs, streams, data):
            stream.synchronize()
            np.testing.assert_array_equal(buf.array(), arr)
    finally:
        for buf in bufs:
            buf.release()
        for stream in streams:
            stream.close()


def test_cuda_graph_capture_and_replay_with_cuda_bindings() -> None:
    """Capture host->device->device->host copies into a graph, then replay it on new host data."""
    rt = cuda.runtime()
    n = 4096
    stream = cuda.Stream()
    src, dst = cuda.HostBuffer(n * 4), cuda.HostBuffer(n * 4)
    a, b = cuda.DeviceBuffer(n * 4), cuda.DeviceBuffer(n * 4)
    graph = exec_ = None
    try:
        cuda.call("cudaStreamBeginCapture", stream.raw, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
        cuda.copy_async(a.ptr, src.ptr, n * 4, "h2d", stream)
        cuda.copy_async(b.ptr, a.ptr, n * 4, "d2d", stream)
        cuda.copy_async(dst.ptr, b.ptr, n * 4, "d2h", stream)
        graph = cuda.call("cudaStreamEndCapture", stream.raw)
        exec_ = cuda.call("cudaGraphInstantiate", graph, 0)
        for value in (1.5, -2.0, 7.25):
            src.view((n,), np.dtype(np.float32))[:] = np.arange(n, dtype=np.float32) * value
            dst.view((n,), np.dtype(np.float32))[:] = 0
            cuda.call("cudaGraphLaunch", exec_, stream.raw)
            stream.synchronize()
            np.testing.assert_array_equal(dst.view((n,), np.dtype(np.float32)), np.arange(n, dtype=np.float32) * value)
    finally:
        if exec_ is not None:
            cuda.call("cudaGraphExecDestroy", exec_)
        if graph is not None:
            cuda.call("cudaGraphDestroy", graph)
        for buf in (src, dst, a, b):
            buf.close()
        stream.close()


def test_cuda_graph_of_a_kernel_with_cupy() -> None:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    x = cupy.zeros(1 << 16, dtype=cupy.float32)
    y = cupy.empty_like(x)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        cupy.multiply(x, 2.0, out=y)  # compile and load the kernels first: module loads cannot be captured
        cupy.add(y, 1.0, out=y)
        stream.synchronize()
        stream.begin_capture()
        cupy.multiply(x, 2.0, out=y)
        cupy.add(y, 1.0, out=y)
        graph = stream.end_capture()
    for seed in range(3):
        host = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
        x.set(host, stream=stream)
        graph.launch(stream)
        stream.synchronize()
        np.testing.assert_allclose(cupy.asnumpy(y), host * 2.0 + 1.0, rtol=1e-6)


# ---- backends ---------------------------------------------------------------------------------------------
def test_two_backends_alive_at_once(gpu_bundle: Path, tmp_path: Path) -> None:
    """Two contexts of one bundle and a second model on the same GPU, called in turn; the first one closed
    early must not break the others (each has its stream; TensorRT's one logger outlives them all)."""
    from edge.runtime import load

    label = gpu_backend(gpu_bundle)
    cls_bundle = build_bundle(tmp_path / "cls.bundle", YOLO_CLS, "--task", "classify")
    x = feeds((1, 3, 256, 256))
    with load(gpu_bundle, "onnxruntime-cpu", warmup=0) as cpu:
        ref = cpu.infer_raw(x)
    with load(cls_bundle, "onnxruntime-cpu", warmup=0) as cpu_cls:
        ref_cls = cpu_cls.infer_raw(feeds((1, 3, 96, 96)))
    a = load(gpu_bundle, label, warmup=0, state_dir=tmp_path)
    b = load(gpu_bundle, label, warmup=0, state_dir=tmp_path)
    try:
        with load(cls_bundle, warmup=0, state_dir=tmp_path) as c:
            for _ in range(3):
                close_to(a.infer_raw(x), ref)
                close_to(c.infer_raw(feeds((1, 3, 96, 96))), ref_cls)
                close_to(b.infer_raw(x), ref)
        a.close()
        close_to(b.infer_raw(x), ref)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("shapes", [[(1, 3, 256, 256), (2, 3, 128, 192), (4, 3, 320, 320), (1, 3, 256, 256)]])
def test_shape_changes(gpu_bundle: Path, tmp_path: Path, shapes: list[tuple[int, ...]]) -> None:
    from edge.runtime import load

    label = gpu_backend(gpu_bundle)
    with load(gpu_bundle, "onnxruntime-cpu", warmup=0) as cpu, load(gpu_bundle, label, state_dir=tmp_path) as gpu:
        for i, shape in enumerate(shapes):
            x = feeds(shape, seed=i)
            close_to(gpu.infer_raw(x), cpu.infer_raw(x))


def _rtx(gpu_bundle: Path) -> None:
    if gpu_backend(gpu_bundle) != "tensorrt-rtx":
        pytest.skip("TensorRT-RTX does not run here (its plan was skipped or not selected)")


def test_rtx_runtime_cache_round_trip_and_jit_timing(
    gpu_bundle: Path, tmp_path: Path, record_timing: Callable[[str, float], None]
) -> None:
    from edge.runtime import load

    _rtx(gpu_bundle)
    x = feeds((1, 3, 256, 256))
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        with load(gpu_bundle, "tensorrt-rtx", warmup=0, state_dir=tmp_path) as model:
            out = model.infer_raw(x)
            runs.append(((time.perf_counter() - t0) * 1000.0, model.backend.cache_loaded, out))  # type: ignore[attr-defined]
    (cold_ms, cold_cached, cold_out), (warm_ms, warm_cached, warm_out) = runs
    assert (cold_cached, warm_cached) == (False, True)
    assert len(list((tmp_path / "tensorrt-rtx").glob("*.cache"))) == 1
    close_to(warm_out, cold_out, rtol=1e-4)
    record_timing("rtx_load_and_first_inference_jit_ms", cold_ms)
    record_timing("rtx_load_and_first_inference_cached_ms", warm_ms)


def test_rtx_whole_cuda_graph(gpu_bundle: Path, tmp_path: Path, record_timing: Callable[[str, float], None]) -> None:
    from edge.runtime import load

    _rtx(gpu_bundle)
    x = feeds((1, 3, 256, 256))
    with (
        load(gpu_bundle, "tensorrt-rtx", state_dir=tmp_path) as plain,
        load(gpu_bundle, "tensorrt-rtx", state_dir=tmp_path, cuda_graph="whole") as graphed,
    ):
        assert graphed.backend.cuda_graph_active  # type: ignore[attr-defined]  # built with REQUIRE_USER_ALLOCATION
        for shape in ((1, 3, 256, 256), (1, 3, 256, 256), (2, 3, 192, 192), (1, 3, 256, 256)):
            f = feeds(shape)
            close_to(graphed.infer_raw(f), plain.infer_raw(f), rtol=1e-3)
        for name, model in (("rtx_infer_ms", plain), ("rtx_infer_cuda_graph_ms", graphed)):
            t0 = time.perf_counter()
            for _ in range(20):
                model.infer_raw(x)
            record_timing(name, (time.perf_counter() - t0) * 1000.0 / 20)


def test_doctor_compares_the_gpu_backend_with_onnxruntime(gpu_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    label = gpu_backend(gpu_bundle)
    code = main(["doctor", str(gpu_bundle), "--rtol", "0.02", "--atol", "0.001"])  # TF32 convolutions on Ampere+
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"on {label}: ok" in out


# ---- every GPU of the box ----------------------------------------------------------------------------------
def _gpus() -> list:  # type: ignore[type-arg]
    import platforms

    gpus = list(platforms.detect().gpus)
    if not gpus:
        pytest.skip("the driver lists no discrete GPU (a Jetson, or no NVML/nvidia-smi)")
    return gpus


def test_gpu_uuids_agree_between_the_driver_and_cuda() -> None:
    gpus = _gpus()
    in_cuda = cuda.device_uuids()
    if not set(in_cuda) & {g.uuid for g in gpus}:
        pytest.skip(f"CUDA's devices {in_cuda} are none of the driver's GPUs (MIG instances have their own UUIDs)")
    listed = {g.uuid for g in gpus}
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        assert set(in_cuda) <= listed
    else:
        assert set(in_cuda) == listed
    for g in gpus:
        if g.uuid in in_cuda:
            assert cuda.device_info(cuda.resolve_device(g.uuid)).compute_capability == g.compute_capability


def test_every_gpu_runs_the_bundle_on_itself(gpu_bundle: Path, tmp_path: Path) -> None:
    from edge.runtime import load

    x = feeds((1, 3, 256, 256))
    with load(gpu_bundle, "onnxruntime-cpu", warmup=0) as cpu:
        ref = cpu.infer_raw(x)
    in_cuda = cuda.device_uuids()
    for g in _gpus():
        if g.uuid not in in_cuda:
            continue  # hidden by CUDA_VISIBLE_DEVICES, or split into MIG instances
        with load(gpu_bundle, gpu=str(g.index), warmup=0, state_dir=tmp_path) as model:
            ordinal = cuda.resolve_device(g.uuid)
            backend = model.backend
            if model.backend_name == "onnxruntime-cuda":
                options = backend._session.get_provider_options()["CUDAExecutionProvider"]  # type: ignore[attr-defined]
                assert int(options["device_id"]) == ordinal
            elif model.backend_name.startswith("tensorrt"):
                assert backend._device == ordinal  # type: ignore[attr-defined]
            # another thread: CUDA's current device is per thread, the backend sets its own
            close_to(in_thread(lambda m=model: m.infer_raw(x)), ref)


def in_thread(fn: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    result: dict[str, dict[str, np.ndarray]] = {}
    worker = threading.Thread(target=lambda: result.update(out=fn()))
    worker.start()
    worker.join()
    return result["out"]
