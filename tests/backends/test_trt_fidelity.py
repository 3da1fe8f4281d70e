"""The TensorRT / TensorRT-RTX backends against NVIDIA's documented API (issue 10, items 1, 4, 6-11).

Where the real ``tensorrt_rtx`` module can answer without a GPU (loggers, ``nptype``, ``Runtime``,
``get_engine_validity``, ``num_DLA_cores``) these tests use it. Deserializing needs a GPU, so the load
path runs against stand-ins at the hardware boundary:

- ``FakeCuda`` models the CUDA device (``cudaSetDevice``, one GPU, a stream handle); it does not model
  memory or timing;
- ``FakeTrt`` models the TensorRT objects a load creates (runtime, engine, runtime config, cache,
  context) and records the order of calls and releases; it does not run kernels. Classic TensorRT is not
  installable here at all, so the DLA runtime is a stand-in too.
The same paths run for real on a GPU in tests/gpu/.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import logging
import re
import subprocess
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge.backends import cuda, trt_common
from edge.backends.compat import Device, plan_problem
from edge.backends.tensorrt import TensorRTBackend
from edge.backends.tensorrt_rtx import TensorRTRTXBackend, validity_reasons
from edge.errors import EngineError
from tests.runtime.bundles import plan_artifact

RTX = importlib.util.find_spec("tensorrt_rtx") is not None
needs_rtx = pytest.mark.skipif(not RTX, reason="tensorrt_rtx is not installed")
ROOT = Path(__file__).resolve().parents[2]

INFO = cuda.DeviceInfo(
    name="NVIDIA GeForce RTX 3090", compute_capability="8.6", integrated=False, can_map_host_memory=True,
    total_memory=24 << 30,
)  # fmt: skip


# ---- stand-ins at the hardware boundary ------------------------------------------------------------------
class FakeStream:
    handle = 7

    def close(self) -> None:
        pass


class FakeEvent:
    def close(self) -> None:
        pass


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """One CUDA device (an RTX 3090): records the cudaSetDevice calls."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cuda, "cuda_available", lambda: (True, ""))
    monkeypatch.setattr(cuda, "resolve_device", lambda d: d if isinstance(d, int) else 0)
    monkeypatch.setattr(cuda, "call", lambda name, *a: calls.append((name, *a)))
    monkeypatch.setattr(cuda, "device_info", lambda device=0: INFO)
    monkeypatch.setattr(cuda, "Stream", FakeStream)
    monkeypatch.setattr(cuda, "Event", FakeEvent)
    return calls


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def track(self, obj: Any, name: str) -> Any:
        weakref.finalize(obj, self.events.append, f"released {name}")
        return obj


class FakeTrt:
    """The slice of the TensorRT(-RTX) API a load uses; ``capturable`` answers is_stream_capturable."""

    __name__ = "tensorrt_rtx"
    __version__ = "1.7.1.116"

    def __init__(
        self, rec: Recorder, *, dla_cores: int = 0, capturable: bool = True, accept_dla: bool = True,
        version: str = "1.7.1.116",
    ) -> None:  # fmt: skip
        rec_ = rec
        self.__version__ = version
        self.rec = rec
        self.CudaGraphStrategy = SimpleNamespace(DISABLED="DISABLED", WHOLE_GRAPH_CAPTURE="WHOLE")
        self.EngineValidity = SimpleNamespace(VALID=0, SUBOPTIMAL=1, INVALID=2)
        self.TensorIOMode = SimpleNamespace(INPUT=0, OUTPUT=1)

        class Context:
            def __init__(self, config: Any) -> None:
                self.config = config
                self.strategy = getattr(config, "cuda_graph_strategy", None)

            def is_stream_capturable(self, stream: int) -> bool:
                rec_.events.append(f"is_stream_capturable({stream})")
                return capturable

        class Cache:
            def deserialize(self, data: bytes) -> bool:
                return True

            def serialize(self) -> bytes:
                rec_.events.append("cache.serialize")
                return b"kernels"

        class RuntimeConfig:
            cuda_graph_strategy = "DISABLED"

            def create_runtime_cache(self) -> Cache:
                return rec_.track(Cache(), "cache")

            def set_runtime_cache(self, cache: Cache) -> None:
                self.cache = cache

        class Engine:
            num_io_tensors = 0
            num_optimization_profiles = 1

            def create_runtime_config(self) -> RuntimeConfig:
                return rec_.track(RuntimeConfig(), "runtime config")

            def create_execution_context(self, config: Any = None) -> Context:
                rec_.events.append(f"context({config.cuda_graph_strategy if config else ''})")
                return rec_.track(Context(config), "context")

        class Runtime:
            num_DLA_cores = dla_cores

            def __init__(self, logger: Any) -> None:
                self._dla = 0
                rec_.track(self, "runtime")

            @property
            def DLA_core(self) -> int:
                return self._dla

            @DLA_core.setter
            def DLA_core(self, value: int) -> None:
                rec_.events.append(f"DLA_core={value}")
                if accept_dla:
                    self._dla = value

            def get_engine_validity(self, plan: bytes) -> tuple[int, int]:
                rec_.events.append("get_engine_validity")
                return 0, 0

            def deserialize_cuda_engine(self, plan: bytes) -> Engine:
                rec_.events.append("deserialize")
                return rec_.track(Engine(), "engine")

        self.Runtime = Runtime


def _load(backend: TrtBackendLike, fake: FakeTrt, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_import_trt", lambda: fake)
    monkeypatch.setattr(trt_common, "make_logger", lambda trt: _Logger())
    backend.load()


TrtBackendLike = Any


class _Logger:
    import contextlib

    @contextlib.contextmanager
    def collect(self) -> Any:
        yield []


# ---- item 1: runtime config lifetime and release order -------------------------------------------------
def test_rtx_runtime_config_lives_as_long_as_the_context_and_release_order(
    fake_cuda: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rec = Recorder()
    art, plan = plan_artifact()
    backend = TensorRTRTXBackend(plan, artifact=art, state_dir=tmp_path)
    _load(backend, FakeTrt(rec), monkeypatch)
    gc.collect()
    assert not [e for e in rec.events if e.startswith("released")]  # nothing freed while the context lives
    assert backend._context.config is backend._runtime_config
    rec.events.clear()
    backend.close()
    gc.collect()
    assert rec.events == [
        "cache.serialize",
        "released context",
        "released runtime config",
        "released cache",
        "released engine",
        "released runtime",
    ]
    assert (tmp_path / "tensorrt-rtx").is_dir() and len(list((tmp_path / "tensorrt-rtx").iterdir())) == 1


# ---- item 4: DLA core ----------------------------------------------------------------------------------
def test_dla_core_is_set_on_the_runtime_before_deserializing(
    fake_cuda: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder()
    art, plan = plan_artifact(backend="tensorrt", ccs=("8.6",), version="10.3.0.30", dla=1)
    backend = TensorRTBackend(plan, artifact=art)
    _load(backend, FakeTrt(rec, dla_cores=2, version="10.3.0.30"), monkeypatch)
    assert rec.events.index("DLA_core=1") < rec.events.index("deserialize")
    assert backend._runtime.DLA_core == 1
    backend.close()


@pytest.mark.parametrize(("cores", "accept", "error"), [
    (1, True, "built for DLA core 1, this machine has 1 DLA core(s)"),
    (0, True, "built for DLA core 1, this machine has 0 DLA core(s)"),
    (2, False, "the runtime did not accept DLA core 1"),
])  # fmt: skip
def test_dla_plan_refused_when_the_runtime_lacks_the_core(
    fake_cuda: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch, cores: int, accept: bool, error: str
) -> None:
    rec = Recorder()
    art, plan = plan_artifact(backend="tensorrt", ccs=("8.6",), version="10.3.0.30", dla=1)
    backend = TensorRTBackend(plan, artifact=art)
    with pytest.raises(EngineError, match=re.escape(error)):
        _load(backend, FakeTrt(rec, dla_cores=cores, accept_dla=accept, version="10.3.0.30"), monkeypatch)
    assert "deserialize" not in rec.events


@needs_rtx
def test_real_runtime_reports_its_dla_cores_and_a_dla_plan_is_refused() -> None:
    """TensorRT-RTX's real Runtime (no DLA anywhere): num_DLA_cores is 0, so the check that used to pass
    ``dla_core + 1`` now fails as it must."""
    import tensorrt_rtx

    runtime = tensorrt_rtx.Runtime(trt_common.make_logger(tensorrt_rtx))
    art, plan = plan_artifact(backend="tensorrt", ccs=("8.6",), version="10.3.0.30", dla=0)
    with pytest.raises(EngineError, match="built for DLA core 0, this machine has 0 DLA core"):
        TensorRTBackend(plan, artifact=art).check_plan(INFO, "10.3.0.30", runtime.num_DLA_cores)


# ---- item 6: types numpy lacks -------------------------------------------------------------------------
@needs_rtx
@pytest.mark.parametrize("kind", ["BF16", "FP8", "INT4", "FP4"])
def test_io_type_numpy_lacks_names_the_tensor(kind: str) -> None:
    import tensorrt_rtx

    dtype = getattr(tensorrt_rtx.DataType, kind)
    with pytest.raises(TypeError):  # what the library itself does
        tensorrt_rtx.nptype(dtype)
    with pytest.raises(EngineError, match=f"I/O tensor 'logits' is {kind}, which numpy has no type for"):
        trt_common.numpy_dtype(tensorrt_rtx, dtype, "logits", "TensorRT-RTX")
    assert trt_common.numpy_dtype(tensorrt_rtx, tensorrt_rtx.DataType.HALF, "x", "TensorRT-RTX").name == "float16"


# ---- item 7: CUDA graphs ------------------------------------------------------------------------------
@pytest.mark.parametrize("capturable", [True, False])
def test_cuda_graph_used_only_on_a_capturable_context(
    fake_cuda: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capturable: bool,
) -> None:  # fmt: skip
    """The check runs once, at the first call (after shapes and addresses are bound: ``_context_replaced`` is
    what ``_infer`` calls there); a context that cannot be captured is replaced by one without a graph."""
    rec = Recorder()
    art, plan = plan_artifact()
    backend = TensorRTRTXBackend(plan, artifact=art, cuda_graph="whole")
    _load(backend, FakeTrt(rec, capturable=capturable), monkeypatch)
    first = weakref.ref(backend._context)
    assert [e for e in rec.events if e.startswith("context(")] == ["context(WHOLE)"]
    with caplog.at_level(logging.WARNING):
        replaced = backend._context_replaced(FakeStream())
        assert backend._context_replaced(FakeStream()) is False  # asked once
    assert rec.events.count(f"is_stream_capturable({FakeStream.handle})") == 1
    assert replaced is (not capturable) and backend.cuda_graph_active is capturable
    if capturable:
        assert backend._context is first() and not caplog.records
    else:
        assert [e for e in rec.events if e.startswith("context(")] == ["context(WHOLE)", "context(DISABLED)"]
        assert backend._context.strategy == "DISABLED" and backend._context.config is backend._runtime_config
        assert first() is None  # the first context went before its replacement was made
        assert rec.events.index("released context") < rec.events.index("context(DISABLED)")
        assert "a CUDA graph cannot be used" in caplog.text
    backend.close()


def test_no_graph_check_without_whole(fake_cuda: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    art, plan = plan_artifact()
    backend = TensorRTRTXBackend(plan, artifact=art)
    _load(backend, FakeTrt(rec), monkeypatch)
    assert backend._context_replaced(FakeStream()) is False and backend.cuda_graph_active is False
    assert not [e for e in rec.events if e.startswith("is_stream_capturable")]
    backend.close()


# ---- item 8: one logger per process --------------------------------------------------------------------
@needs_rtx
def test_one_logger_per_process_shared_by_builder_and_backends() -> None:
    import tensorrt_rtx

    from builders import engine_common

    logger = trt_common.make_logger(tensorrt_rtx)
    assert engine_common.make_logger(tensorrt_rtx) is logger
    ref = weakref.ref(logger)
    del logger
    gc.collect()
    assert ref() is not None  # never freed while TensorRT may still call it
    runtime = tensorrt_rtx.Runtime(ref())
    with ref().collect() as first:
        with ref().collect() as second:
            assert runtime.deserialize_cuda_engine(b"not a plan") is None
        assert runtime.deserialize_cuda_engine(b"still not a plan") is None
    assert any("Error Code" in e for e in second)
    assert len(first) > len(second)  # each caller sees the errors of its own calls


# ---- item 9: return values ----------------------------------------------------------------------------
def test_rejected_tensor_address_is_an_error_naming_the_tensor() -> None:
    backend = TensorRTRTXBackend(b"plan")
    backend._context = SimpleNamespace(set_tensor_address=lambda name, ptr: False)  # TensorRT's answer
    with pytest.raises(EngineError, match="rejected the address of tensor 'images'"):
        backend._set_address("images", 0x1000)


@needs_rtx
def test_refused_compute_capability_is_a_build_error() -> None:
    import tensorrt_rtx

    from builders.engine_rtx import set_compute_capabilities
    from edge.errors import BuildError

    logger = trt_common.make_logger(tensorrt_rtx)
    config = tensorrt_rtx.Builder(logger).create_builder_config()
    set_compute_capabilities(tensorrt_rtx, config, ["SM86", "SM89"], "rtx")  # accepted
    with pytest.raises(
        BuildError, match=r"refused compute capability CURRENT at index 0 of 2 \(.*When set to kCURRENT"
    ):
        set_compute_capabilities(tensorrt_rtx, config, ["CURRENT", "SM86"], "rtx")


# ---- item 10: TensorRT-RTX release ---------------------------------------------------------------------
@pytest.mark.parametrize(("built", "here", "ok"), [
    ("1.7.1.116", "1.7.1.116", True),
    ("1.7.1", "1.7.1.116", True),
    ("1.7.0.80", "1.7.1.116", False),
    ("1.6.1.10", "1.7.1.116", False),
    ("1.8.0.1", "1.7.1.116", False),
])  # fmt: skip
def test_rtx_plans_need_the_same_release(built: str, here: str, ok: bool) -> None:
    art, _ = plan_artifact(version=built)
    why = plan_problem(art, Device(compute_capability="8.6", tensorrt_rtx_version=here))
    assert (why is None) is ok
    if not ok:
        assert f"built with TensorRT-RTX {built}, here {here}" in str(why)


@needs_rtx
def test_engine_validity_is_asked_before_deserializing() -> None:
    """The real ``Runtime.get_engine_validity`` on bytes that are no plan: refused with the library's reason."""
    import tensorrt_rtx

    backend = TensorRTRTXBackend(b"junk" * 40, artifact=plan_artifact()[0])
    backend._trt = tensorrt_rtx
    backend._logger = trt_common.make_logger(tensorrt_rtx)
    runtime = tensorrt_rtx.Runtime(backend._logger)
    with pytest.raises(EngineError, match=r"says the plan is not valid here: the plan is malformed.*--force"):
        backend._check_validity(runtime)


@needs_rtx
def test_validity_flags_in_words() -> None:
    import tensorrt_rtx

    flags = tensorrt_rtx.EngineInvalidityDiagnostics
    both = int(flags.VERSION_MISMATCH) | int(flags.OLD_CUDA_DRIVER)
    assert validity_reasons(tensorrt_rtx, both) == [
        "built with another TensorRT-RTX release",
        "the NVIDIA driver is too old",
    ]


# ---- item 11: layering --------------------------------------------------------------------------------
def test_backends_never_import_the_runtime_layer() -> None:
    for path in sorted((ROOT / "edge" / "backends").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any(n.startswith(("edge.runtime", "edge.cli")) for n in names), (path.name, names)
    code = (
        "import sys, edge.backends.tensorrt, edge.backends.tensorrt_rtx, edge.backends.trt_common;"
        "print(sorted(m for m in sys.modules if m.startswith('edge.runtime')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
