"""TensorRT and TensorRT-RTX backends without a GPU: plan checks before deserializing, runtime-cache files,
clear errors. Execution on a GPU is tested in tests/gpu/."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from edge.backends import cuda
from edge.backends.tensorrt import TensorRTBackend
from edge.backends.tensorrt_rtx import RuntimeCacheStore, TensorRTRTXBackend
from edge.errors import BundleError, ConfigError, EngineError
from edge.runtime import Facts, load
from edge.runtime.bundle import Bundle
from edge.runtime.select import select_artifact
from tests.runtime.bundles import build_retinaface, plan_artifact
from tests.runtime.conftest import CPU

HAS_GPU = cuda.cuda_available()[0]
RTX = importlib.util.find_spec("tensorrt_rtx") is not None


def _info(cc: str) -> cuda.DeviceInfo:
    return cuda.DeviceInfo(
        name="NVIDIA GeForce RTX",
        compute_capability=cc,
        integrated=False,
        can_map_host_memory=True,
        total_memory=24 << 30,
    )


# (id, backend class, artifact facts, device cc, library version, error fragment or None)
PLAN_CHECKS = [
    ("rtx-match", TensorRTRTXBackend, {"ccs": ("8.6", "8.9")}, "8.9", "1.7.1.116", None),
    ("rtx-cc", TensorRTRTXBackend, {"ccs": ("8.6",)}, "8.9", "1.7.1.116", "built for sm 8.6, this GPU is sm 8.9"),
    ("rtx-version", TensorRTRTXBackend, {"version": "1.6.0"}, "8.6", "1.7.1.116", "built with TensorRT-RTX 1.6.0"),
    (
        "trt-match",
        TensorRTBackend,
        {"backend": "tensorrt", "ccs": ("8.7",), "version": "10.3.0.30"},
        "8.7",
        "10.3.0.26",
        None,
    ),
    (
        "trt-version",
        TensorRTBackend,
        {"backend": "tensorrt", "ccs": ("8.7",), "version": "10.3.0"},
        "8.7",
        "10.13.0",
        "plans need the same major.minor",
    ),
]


@pytest.mark.parametrize(
    ("cls", "facts", "cc", "version", "error"), [c[1:] for c in PLAN_CHECKS], ids=[c[0] for c in PLAN_CHECKS]
)
def test_plan_is_checked_before_deserializing(cls, facts, cc, version, error) -> None:
    art, data = plan_artifact(**facts)
    backend = cls(data, artifact=art)
    if error is None:
        backend.check_plan(_info(cc), version)
    else:
        with pytest.raises(EngineError) as info:
            backend.check_plan(_info(cc), version)
        assert error in str(info.value) and "rebuild the bundle" in str(info.value)
    assert backend._engine is None  # nothing was handed to TensorRT


@pytest.mark.skipif(HAS_GPU, reason="this machine has a CUDA GPU; see tests/gpu")
@pytest.mark.parametrize("cls", [TensorRTBackend, TensorRTRTXBackend])
def test_load_without_gpu_is_a_clear_error(cls) -> None:
    backend = cls(b"plan")
    with pytest.raises(
        EngineError, match=r"no usable CUDA GPU \(cudaGetDeviceCount: cudaError\w+( \([^()]+\))?\); use --backend"
    ):
        backend.load()
    assert backend._engine is None and not backend.loaded


def _classic_trt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Runtime")


@pytest.mark.skipif(_classic_trt(), reason="classic TensorRT is installed")
def test_classic_tensorrt_missing_says_what_to_install() -> None:
    with pytest.raises(EngineError, match="the tensorrt module is not importable.*JetPack"):
        TensorRTBackend(b"plan")._import_trt()


def test_bad_cuda_graph_option() -> None:
    with pytest.raises(ConfigError, match="cuda_graph: 'all' is not one of none, whole"):
        TensorRTRTXBackend(b"plan", cuda_graph="all")


# ---- the runtime cache file -------------------------------------------------------------------------------
def test_runtime_cache_round_trip(tmp_path: Path) -> None:
    key = RuntimeCacheStore.make_key("ab" * 32, "RTX 3090", "8.6", "1.7.1.116")
    store = RuntimeCacheStore(tmp_path / "state", key)
    assert store.load() is None
    path = store.save(b"kernels v1")
    assert path == tmp_path / "state" / "tensorrt-rtx" / f"{key}.cache"
    assert RuntimeCacheStore(tmp_path / "state", key).load() == b"kernels v1"
    store.save(b"kernels v2")
    assert store.load() == b"kernels v2"
    assert os.listdir(store.dir) == [path.name]  # no temp files left behind


def test_runtime_cache_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    store = RuntimeCacheStore(tmp_path, "k")
    store.save(b"good cache")
    with pytest.raises(TypeError):
        store.save(12345)  # type: ignore[arg-type]  # the write itself fails half-way
    assert store.load() == b"good cache"
    assert os.listdir(store.dir) == ["k.cache"]


def test_runtime_cache_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    store = RuntimeCacheStore(blocker, "k")
    assert store.load() is None
    with pytest.raises(EngineError, match="cannot write the runtime cache in"):
        store.save(b"x")


def test_runtime_cache_key_covers_plan_gpu_and_version() -> None:
    base = ("ab" * 32, "RTX 3090", "8.6", "1.7.1.116")
    keys = {RuntimeCacheStore.make_key(*base)}
    for i, other in enumerate(("cd" * 32, "RTX 3080", "8.9", "1.8.0")):
        changed = list(base)
        changed[i] = other
        keys.add(RuntimeCacheStore.make_key(*changed))
    assert len(keys) == 5


# ---- a real TensorRT-RTX plan in a bundle ----------------------------------------------------------------
@pytest.mark.skipif(not RTX, reason="tensorrt_rtx is not installed")
def test_real_rtx_plan_is_skipped_on_this_machine_with_the_reason(tmp_path: Path) -> None:
    """`edge build --target cpu,rtx-ampere` (a real ahead-of-time TensorRT-RTX plan) loaded on this machine."""
    bundle = build_retinaface(tmp_path / "rtx.bundle", targets=("cpu", "rtx-ampere"))
    plan = next(a for a in Bundle.open(bundle).manifest.artifacts if a.backend == "tensorrt-rtx")
    assert plan.compute_capabilities == ("8.6",)
    rtx_3090 = Facts(
        target="rtx-ampere",
        compute_capability="8.6",
        cuda=True,
        tensorrt_rtx_version=plan.tensorrt_version,
    )
    assert select_artifact(rtx_3090, Bundle.open(bundle).manifest.artifacts).artifact == plan
    with load(bundle, facts=CPU, warmup=0) as model:
        assert model.backend_name == "onnxruntime-cpu"
        assert model.choice.skipped == ((plan.file, "no usable CUDA GPU (no NVIDIA GPU detected)"),)
    with pytest.raises(BundleError, match=f"{plan.file}: no usable CUDA GPU"):
        load(bundle, "tensorrt-rtx", facts=CPU)
    if not HAS_GPU:  # the backend itself refuses before TensorRT sees the plan
        backend = TensorRTRTXBackend(Bundle.open(bundle).read_verified(plan), artifact=plan)
        with pytest.raises(EngineError, match="no usable CUDA GPU"):
            backend.load()


@pytest.mark.skipif(not RTX, reason="tensorrt_rtx is not installed")
def test_logger_keeps_tensorrt_errors_for_the_message() -> None:
    """The real TensorRT-RTX runtime rejecting bytes that are not a plan: the logged errors are captured."""
    import tensorrt_rtx

    from edge.backends.trt_common import make_logger

    logger = make_logger(tensorrt_rtx)
    runtime = tensorrt_rtx.Runtime(logger)
    with logger.collect() as errors:
        assert runtime.deserialize_cuda_engine(b"not a plan") is None
    assert errors and any("Error Code" in e for e in errors)


@pytest.mark.skipif(not RTX, reason="tensorrt_rtx is not installed")
def test_output_allocator_records_shapes() -> None:
    import tensorrt_rtx

    from edge.backends.trt_common import make_output_allocator

    allocator = make_output_allocator(tensorrt_rtx)
    assert isinstance(allocator, tensorrt_rtx.IOutputAllocator)
    allocator.notify_shape("selected", tensorrt_rtx.Dims([7, 3]))
    assert allocator.shapes == {"selected": (7, 3)}
    allocator.close()
