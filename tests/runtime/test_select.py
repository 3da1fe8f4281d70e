"""Artifact selection as a table: machine x artifacts x pinned backend -> choice or error."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from edge.errors import BundleError, ConfigError
from edge.runtime.select import Facts, select_artifact
from tests.runtime.bundles import onnx_artifact, plan_artifact

ONNX = onnx_artifact(b"onnx bytes")
RTX86 = plan_artifact("engine-rtx-ampere.plan", ccs=("8.6",), version="1.7.1.116")[0]
RTX86_89_OLD = plan_artifact(
    "engine-rtx-old.plan", ccs=("8.6", "8.9"), targets=("rtx-ampere", "rtx-ada"), version="1.6.0"
)[0]
ORIN = plan_artifact(
    "engine-jetson-orin-nano-8gb.plan",
    backend="tensorrt",
    targets=("jetson-orin-nano-8gb",),
    ccs=("8.7",),
    version="10.3.0.30",
    l4t="36.4.3",
)[0]
ORIN_AGX = plan_artifact(
    "engine-jetson-agx-orin-64gb.plan",
    backend="tensorrt",
    targets=("jetson-agx-orin-64gb",),
    ccs=("8.7",),
    version="10.3.0.30",
    l4t="36.4.0",
)[0]
ORIN_DLA = plan_artifact(
    "engine-agx-dla0.plan",
    backend="tensorrt",
    targets=("jetson-agx-orin-64gb",),
    ccs=("8.7",),
    version="10.3.0.30",
    l4t="36.4.3",
    dla=0,
)[0]
AMPERE_PLUS = plan_artifact(
    "engine-ampere-plus.plan",
    backend="tensorrt",
    targets=("a100",),
    ccs=("8.0",),
    version="10.13.0.35",
    hwcompat="ampere+",
)[0]
VCOMPAT = plan_artifact(
    "engine-vc.plan",
    backend="tensorrt",
    targets=("hopper",),
    ccs=("9.0",),
    version="10.8.0.43",
    version_compatible=True,
)[0]
HOPPER = plan_artifact(
    "engine-hopper.plan", backend="tensorrt", targets=("hopper",), ccs=("9.0",), version="10.13.0.35"
)[0]

CPU = Facts(target="cpu", cuda=False, cuda_reason="no NVIDIA GPU detected")
RTX3090 = Facts(
    target="rtx-ampere",
    gpu_name="NVIDIA GeForce RTX 3090",
    compute_capability="8.6",
    cuda=True,
    cuda_reason="",
    tensorrt_rtx_version="1.7.1.116",
    trt_flavour="tensorrt-rtx",
)
RTX3090_ORT_GPU = Facts(**{**RTX3090.__dict__, "ort_providers": ("CUDAExecutionProvider", "CPUExecutionProvider")})
RTX4090 = Facts(**{**RTX3090.__dict__, "target": "rtx-ada", "compute_capability": "8.9", "gpu_name": "RTX 4090"})
RTX3090_NO_DRIVER = Facts(
    **{**RTX3090.__dict__, "cuda": False, "cuda_reason": "cudaGetDeviceCount: cudaErrorInsufficientDriver"}
)
NANO = Facts(
    target="jetson-orin-nano-8gb",
    gpu_name="Orin",
    compute_capability="8.7",
    cuda=True,
    cuda_reason="",
    tensorrt_version="10.3.0.30",
    l4t_version="36.4.3",
    trt_flavour="tensorrt",
)
NANO_JP5 = Facts(**{**NANO.__dict__, "l4t_version": "35.4.1", "tensorrt_version": "8.5.2.2"})
AGX = Facts(**{**NANO.__dict__, "target": "jetson-agx-orin-64gb", "dla_cores": 2})
A100 = Facts(
    target="a100",
    gpu_name="A100",
    compute_capability="8.0",
    cuda=True,
    cuda_reason="",
    tensorrt_version="10.13.0.35",
    trt_flavour="tensorrt",
)
H100 = Facts(**{**A100.__dict__, "target": "hopper", "compute_capability": "9.0", "gpu_name": "H100"})
H100_OLD_TRT = Facts(**{**H100.__dict__, "tensorrt_version": "10.7.0"})

ALL_RTX = [ONNX, RTX86, RTX86_89_OLD]
ALL_JETSON = [ONNX, ORIN, ORIN_AGX, ORIN_DLA]

# (id, machine, artifacts, pinned backend, expected (file, backend label) or error regex fragments)
TABLE = [
    ("cpu-auto", CPU, ALL_RTX, None, ("model.onnx", "onnxruntime-cpu")),
    ("cpu-onnx-pinned", CPU, ALL_RTX, "onnxruntime", ("model.onnx", "onnxruntime-cpu")),
    (
        "cpu-pin-rtx",
        CPU,
        ALL_RTX,
        "tensorrt-rtx",
        [
            "nothing in this bundle runs here with backend 'tensorrt-rtx'",
            "engine-rtx-ampere.plan: no usable CUDA GPU",
            "--target cpu",
        ],
    ),
    ("cpu-pin-cuda", CPU, ALL_RTX, "onnxruntime-cuda", ["model.onnx: no usable CUDA GPU (no NVIDIA GPU detected)"]),
    (
        "cpu-plans-only",
        CPU,
        [RTX86],
        None,
        ["Built: engine-rtx-ampere.plan (tensorrt-rtx, 1.7.1.116, sm 8.6, fp16", "--target cpu -o"],
    ),
    ("3090-auto-plan", RTX3090, ALL_RTX, None, ("engine-rtx-ampere.plan", "tensorrt-rtx")),
    ("3090-pin-cpu", RTX3090, ALL_RTX, "onnxruntime-cpu", ("model.onnx", "onnxruntime-cpu")),
    ("3090-old-plan-only", RTX3090, [ONNX, RTX86_89_OLD], None, ("model.onnx", "onnxruntime-cpu")),
    ("3090-ort-gpu", RTX3090_ORT_GPU, [ONNX, RTX86_89_OLD], None, ("model.onnx", "onnxruntime-cuda")),
    ("3090-pin-ort-cuda", RTX3090_ORT_GPU, ALL_RTX, "onnxruntime-cuda", ("model.onnx", "onnxruntime-cuda")),
    ("3090-pin-ort-cuda-missing", RTX3090, ALL_RTX, "onnxruntime-cuda", ["ONNX Runtime has no CUDA provider here"]),
    (
        "3090-old-plan-pinned",
        RTX3090,
        [ONNX, RTX86_89_OLD],
        "tensorrt-rtx",
        [
            "built with TensorRT-RTX 1.6.0, here 1.7.1.116 (TensorRT-RTX plans run only with the release that "
            "built them, 1.6.0)",
            "--target rtx-ampere",
        ],
    ),
    ("3090-no-driver", RTX3090_NO_DRIVER, ALL_RTX, None, ("model.onnx", "onnxruntime-cpu")),
    ("3090-no-driver-pinned", RTX3090_NO_DRIVER, ALL_RTX, "tensorrt-rtx", ["cudaErrorInsufficientDriver"]),
    (
        "4090-wrong-cc",
        RTX4090,
        [ONNX, RTX86],
        "tensorrt-rtx",
        ["built for sm 8.6, this GPU is sm 8.9", "--target rtx-ada"],
    ),
    (
        "4090-rtx-not-installed",
        Facts(**{**RTX4090.__dict__, "tensorrt_rtx_version": None}),
        [ONNX, RTX86_89_OLD],
        "tensorrt-rtx",
        ["TensorRT-RTX is not installed here"],
    ),
    ("3090-pin-classic", RTX3090, ALL_RTX, "tensorrt", ["backend 'tensorrt'", "Built: model.onnx"]),
    ("nano-auto", NANO, ALL_JETSON, None, ("engine-jetson-orin-nano-8gb.plan", "tensorrt")),
    ("nano-other-module-same-l4t", NANO, [ONNX, ORIN_AGX], None, ("engine-jetson-agx-orin-64gb.plan", "tensorrt")),
    ("nano-dla-plan", NANO, [ONNX, ORIN_DLA], "tensorrt", ["built for DLA core 0, this machine has 0 DLA core(s)"]),
    ("agx-prefers-own-gpu-plan", AGX, ALL_JETSON, None, ("engine-jetson-agx-orin-64gb.plan", "tensorrt")),
    ("agx-dla-only", AGX, [ONNX, ORIN_DLA], None, ("engine-agx-dla0.plan", "tensorrt")),
    ("nano-jp5", NANO_JP5, [ONNX, ORIN], "tensorrt", ["built with TensorRT 10.3.0.30, here 8.5.2.2"]),
    ("jetson-plan-on-desktop", A100, [ONNX, ORIN], "tensorrt", ["built for sm 8.7, this GPU is sm 8.0"]),
    ("a100-ampere-plus", A100, [ONNX, AMPERE_PLUS], None, ("engine-ampere-plus.plan", "tensorrt")),
    ("h100-ampere-plus", H100, [ONNX, AMPERE_PLUS], None, ("engine-ampere-plus.plan", "tensorrt")),
    (
        "nano-ampere-plus",
        Facts(**{**NANO.__dict__, "tensorrt_version": "10.13.0"}),
        [ONNX, AMPERE_PLUS],
        "tensorrt",
        ["hardware-compatible for Ampere+ discrete GPUs"],
    ),
    ("h100-version-compatible", H100, [ONNX, VCOMPAT], None, ("engine-vc.plan", "tensorrt")),
    (
        "h100-older-runtime",
        H100_OLD_TRT,
        [ONNX, VCOMPAT],
        "tensorrt",
        ["built version-compatible with TensorRT 10.8.0.43"],
    ),
    ("h100-exact", H100, [ONNX, HOPPER, VCOMPAT], None, ("engine-hopper.plan", "tensorrt")),
    ("h100-old-trt-exact-plan", H100_OLD_TRT, [ONNX, HOPPER], None, ("model.onnx", "onnxruntime-cpu")),
    ("no-artifacts", CPU, [], None, ["Built: no artifacts"]),
]


@pytest.mark.parametrize(
    ("machine", "artifacts", "backend", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_selection_table(machine: Facts, artifacts: list, backend: str | None, expected: object) -> None:
    if isinstance(expected, tuple):
        choice = select_artifact(machine, artifacts, backend)
        assert (choice.artifact.file, choice.label) == expected
    else:
        with pytest.raises(BundleError) as info:
            select_artifact(machine, artifacts, backend, bundle="face.bundle", source="face.onnx")
        message = str(info.value)
        assert "\n" not in message
        for fragment in expected:  # type: ignore[union-attr]
            assert fragment in message, f"{fragment!r} not in {message!r}"


def test_skipped_plans_are_recorded_with_reasons() -> None:
    choice = select_artifact(RTX4090, [ONNX, RTX86], None)
    assert choice.label == "onnxruntime-cpu"
    assert choice.skipped == (("engine-rtx-ampere.plan", "built for sm 8.6, this GPU is sm 8.9"),)


def test_exact_error_text() -> None:
    with pytest.raises(BundleError) as info:
        select_artifact(CPU, [ONNX, RTX86], "tensorrt-rtx", bundle="face.bundle", source="face.onnx")
    assert str(info.value) == (
        "face.bundle: nothing in this bundle runs here with backend 'tensorrt-rtx'. "
        "Built: model.onnx (onnx, fp32); engine-rtx-ampere.plan (tensorrt-rtx, 1.7.1.116, sm 8.6, fp16; "
        "targets rtx-ampere). "
        "Not runnable: engine-rtx-ampere.plan: no usable CUDA GPU (no NVIDIA GPU detected). "
        "This machine: target cpu, no usable CUDA GPU, TensorRT not installed, "
        "TensorRT-RTX not installed, ONNX Runtime providers CPU. "
        "Fix: rebuild for this machine with `edge build face.onnx --target cpu -o face.bundle --force` "
        "or choose another --backend"
    )


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("backend 'cuda' is not one of tensorrt, tensorrt-rtx")):
        select_artifact(CPU, [ONNX], "cuda")


def test_facts_from_machine_reads_platforms_fields() -> None:
    platform = SimpleNamespace(id="jetson-agx-orin-64gb", dla_cores=2, trt_flavour="tensorrt")
    machine = SimpleNamespace(
        platform=platform,
        gpu_name="Orin",
        compute_capability="8.7",
        tensorrt_version="10.3.0.30",
        tensorrt_rtx_version=None,
        l4t_version="36.4.3",
    )
    facts = Facts.from_machine(machine, cuda=(True, ""), ort_providers=("CPUExecutionProvider",))
    assert facts == Facts(**{**AGX.__dict__, "gpu_name": "Orin"})


def test_facts_from_detected_machine() -> None:
    """The real detector on this machine: facts agree with what platforms.detect() reports."""
    import platforms
    from edge.runtime import detect_facts

    machine = platforms.detect()
    facts = detect_facts()
    assert facts.target == machine.platform.id
    assert facts.compute_capability == machine.compute_capability
    assert "CPUExecutionProvider" in facts.ort_providers
    if machine.gpu_count == 0:
        assert not facts.cuda and facts.cuda_reason


@pytest.mark.parametrize(("command", "expected"), [
    (
        "edge build /m/face.onnx --output /b/old.bundle --target rtx-ampere --precision int8 --calib 'my photos'",
        "edge build /m/face.onnx --target rtx-ampere --precision int8 --calib 'my photos' --target rtx-ada "
        "-o face.bundle --force",
    ),
    (
        "edge build face.onnx --output face.bundle --target rtx-ada,cpu --precision fp16 --force",
        "edge build face.onnx --target rtx-ada,cpu --precision fp16 --force -o face.bundle",
    ),
    ("build_engine.py face.onnx --output x.bundle", "build_engine.py face.onnx --target rtx-ada -o face.bundle --force"),
    ("build_engine.py face.onnx --target auto --dla 0", "build_engine.py face.onnx --target auto --dla 0 -o face.bundle --force"),
    (None, "edge build face.onnx --target rtx-ada -o face.bundle --force"),
    ("edge build 'unclosed", "edge build face.onnx --target rtx-ada -o face.bundle --force"),
])  # fmt: skip
def test_rebuild_hint_keeps_the_original_build_flags(command: str | None, expected: str) -> None:
    """The fix in a selection error is the bundle's own build command (manifest builder.command), with this
    machine's target added, the output set to the bundle and --force (the bundle exists)."""
    with pytest.raises(BundleError) as info:
        select_artifact(
            RTX4090, [ONNX, RTX86], "tensorrt-rtx", bundle="face.bundle", source="face.onnx", command=command
        )
    assert str(info.value).endswith(f"Fix: rebuild for this machine with `{expected}` or choose another --backend")
