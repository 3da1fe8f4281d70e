"""CUDA helpers on a machine without a GPU: the real cuda-python answers, turned into clear errors.

GPU behaviour (buffers, streams, events) is tested in tests/gpu/.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.backends import cuda
from edge.errors import EngineError

HAS_GPU = cuda.cuda_available()[0]
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="this machine has a CUDA GPU; see tests/gpu")


def test_check_unpacks_results() -> None:
    rt = cuda.runtime()
    ok = rt.cudaError_t.cudaSuccess
    assert cuda.check((ok,)) is None
    assert cuda.check((ok, 5)) == 5
    assert cuda.check((ok, 1, 2)) == (1, 2)
    with pytest.raises(EngineError, match=r"^cudaMalloc failed: cudaErrorMemoryAllocation \(2\)$"):
        cuda.check((rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc")


@no_gpu_only
def test_cuda_available_says_why_not() -> None:
    ok, reason = cuda.cuda_available()
    assert not ok
    assert reason.startswith("cudaGetDeviceCount: cudaError") or reason == "no CUDA device found"
    name = reason.removeprefix("cudaGetDeviceCount: ").split(" ")[0]
    if name in cuda.HINTS:  # the usual no-GPU answers come with what they mean (skip reasons, edge doctor)
        assert reason == f"cudaGetDeviceCount: {name} ({cuda.HINTS[name]})"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cudaErrorInsufficientDriver", "cudaErrorInsufficientDriver (no NVIDIA driver loaded, or one older than"),
        ("cudaErrorNoDevice", "cudaErrorNoDevice (the driver sees no CUDA device)"),
        ("cudaErrorLaunchFailure", "cudaErrorLaunchFailure"),
    ],
)
def test_explain_error_names(name: str, expected: str) -> None:
    assert cuda.explain(name).startswith(expected)
    if name not in cuda.HINTS:
        assert cuda.explain(name) == name


@no_gpu_only
@pytest.mark.parametrize(
    "make",
    [
        lambda: cuda.Stream(),
        lambda: cuda.Event(),
        lambda: cuda.HostBuffer(64),
        lambda: cuda.HostBuffer(64, mapped=True),
        lambda: cuda.DeviceBuffer(64),
        lambda: cuda.TensorBuffers(np.dtype(np.float32)).ensure((2, 3)),
        lambda: cuda.device_info(0),
    ],
    ids=["stream", "event", "pinned", "mapped", "device", "tensor-buffers", "device-info"],
)
def test_every_allocation_fails_with_the_cuda_error_name(make) -> None:
    with pytest.raises(EngineError) as info:
        make()
    assert "failed: cudaError" in str(info.value)


def test_tensor_buffers_before_allocation() -> None:
    buf = cuda.TensorBuffers(np.dtype(np.float16))
    with pytest.raises(EngineError, match="used before allocation"):
        buf.array()
    buf.release()  # nothing to release is fine
