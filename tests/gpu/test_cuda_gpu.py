"""CUDA buffers, streams and events on a real GPU (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.backends import cuda
from tests.gpu.conftest import requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]


def test_device_info_matches_platform_detection() -> None:
    import platforms

    info = cuda.device_info(0)
    machine = platforms.detect()
    assert info.compute_capability == machine.compute_capability
    assert info.total_memory > 0


def test_tensor_buffers_round_trip_and_reuse() -> None:
    stream = cuda.Stream()
    start, end = cuda.Event(), cuda.Event()
    buf = cuda.TensorBuffers(np.dtype(np.float32))
    try:
        buf.ensure((4, 256))
        data = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
        np.copyto(buf.array(), data)
        start.record(stream)
        buf.to_device(stream)
        buf.array()[:] = 0
        buf.to_host(stream)
        end.record(stream)
        stream.synchronize()
        np.testing.assert_array_equal(buf.array(), data)
        assert start.elapsed_ms(end) >= 0.0
        buf.ensure((2, 256))  # smaller: the same memory
        buf.ensure((4, 256))
        assert buf.allocations == 1
        buf.ensure((8, 256))  # larger: grown once
        assert buf.allocations == 2 and buf.array().shape == (8, 256)
    finally:
        buf.release()
        start.close()
        end.close()
        stream.close()


def test_mapped_host_memory_is_visible_to_the_device() -> None:
    info = cuda.device_info(0)
    if not info.can_map_host_memory:
        pytest.skip(f"{info.name} cannot map host memory")
    stream = cuda.Stream()
    mapped = cuda.HostBuffer(1024, mapped=True)
    device = cuda.DeviceBuffer(1024)
    pinned = cuda.HostBuffer(1024)
    try:
        assert mapped.device_ptr != 0
        mapped.bytes[:] = np.arange(1024) % 251
        cuda.copy_async(device.ptr, mapped.device_ptr, 1024, "d2d", stream)  # the GPU reads host memory
        cuda.copy_async(pinned.ptr, device.ptr, 1024, "d2h", stream)
        stream.synchronize()
        np.testing.assert_array_equal(pinned.bytes, np.arange(1024) % 251)
    finally:
        for b in (mapped, device, pinned):
            b.close()
        stream.close()
