"""builders.engine_trt on a machine without classic TensorRT (CI): the refusal, and the timing-cache file.

The classic build calls themselves are type-checked against the classic API stubs (test_stubs.py); they
run on a device with JetPack (scripts/build_engine.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.engine_common import EngineRequest
from builders.engine_trt import ClassicOptions, build_classic, classic_version, import_classic, save_timing_cache
from edge.errors import BuildError


def test_stub_only_tensorrt_is_not_mistaken_for_classic_tensorrt() -> None:
    # Here `tensorrt/` holds only .pyi stubs (tensorrt-stubs): `import tensorrt` succeeds as an empty
    # namespace package. The kit must still say that classic TensorRT is missing.
    import tensorrt

    assert not hasattr(tensorrt, "Builder")
    with pytest.raises(
        BuildError,
        match=r"classic TensorRT \(`import tensorrt`\) is not installed on this machine.*scripts/build_engine\.py",
    ):
        import_classic()
    assert classic_version() is None


def test_build_classic_refuses_before_touching_anything(tmp_path: Path) -> None:
    request = EngineRequest(tmp_path / "m.onnx", tmp_path / "m.plan")
    with pytest.raises(BuildError, match="classic TensorRT"):
        build_classic(request, ClassicOptions(dla_core=0, timing_cache=tmp_path / "cache.bin"), "fp16")
    assert list(tmp_path.iterdir()) == []


def test_timing_cache_is_saved_atomically(tmp_path: Path) -> None:
    cache = tmp_path / "caches" / "orin.cache"
    save_timing_cache(cache, b"first")
    save_timing_cache(cache, memoryview(b"second"))
    assert cache.read_bytes() == b"second"
    with pytest.raises(TypeError):
        save_timing_cache(cache, 12345)  # type: ignore[arg-type]
    assert cache.read_bytes() == b"second"  # the failed write left the old cache and no temp file
    assert [p.name for p in cache.parent.iterdir()] == ["orin.cache"]
