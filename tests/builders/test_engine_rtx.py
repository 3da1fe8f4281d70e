"""Real TensorRT-RTX ahead-of-time builds (no GPU needed): plans, profiles, CC coverage, parser errors."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from builders import engine_common
from builders.engine_common import EngineRequest
from builders.engine_rtx import build_rtx
from edge.errors import BuildError

RETINA_PROFILE = {"input": {"min": (1, 3, 320, 320), "opt": (1, 3, 640, 640), "max": (2, 3, 640, 640)}}


def plan_sms(path: Path) -> set[str]:
    """The SM architectures a TensorRT-RTX plan carries kernels for (``sm86`` markers in the plan)."""
    return {m.decode() for m in re.findall(rb"sm\d{2,3}", path.read_bytes())}


@pytest.mark.parametrize(
    ("ccs", "sms"),
    [(["8.6"], {"sm86"}), (["8.6", "8.9"], {"sm86", "sm89"}), (["7.5", "12.0", "7.5"], {"sm75", "sm120"})],
)
def test_retinaface_plan_covers_exactly_the_requested_compute_capabilities(
    retinaface_onnx: Path, tmp_path: Path, ccs: list[str], sms: set[str]
) -> None:
    plan_path = tmp_path / "rf.plan"
    plan = build_rtx(EngineRequest(retinaface_onnx, plan_path, RETINA_PROFILE, label="rf"), ccs)
    assert plan.compute_capabilities == tuple(dict.fromkeys(ccs))
    assert plan.size == plan_path.stat().st_size > 1_000_000
    assert plan_path.read_bytes()[:4] == b"vtrt"
    assert plan_sms(plan_path) == sms
    assert plan.tensorrt_version.startswith("1.")


@pytest.mark.parametrize("model", ["resnet50_onnx", "squeezenet_onnx"])
def test_light_models_build_with_a_dynamic_batch_profile(
    model: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    onnx_path: Path = request.getfixturevalue(model)
    profile = {
        "gpu_0/data_0" if "resnet" in model else "data_0": {
            "min": (1, 3, 224, 224),
            "opt": (4, 3, 224, 224),
            "max": (8, 3, 224, 224),
        }
    }
    plan = build_rtx(
        EngineRequest(onnx_path, tmp_path / "m.plan", profile, workspace_mib=512, optimization_level=1), ["8.9"]
    )
    assert plan.size > 0 and plan_sms(tmp_path / "m.plan") == {"sm89"}


def test_progress_is_reported_on_stderr(
    retinaface_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_rtx(EngineRequest(retinaface_onnx, tmp_path / "rf.plan", RETINA_PROFILE, label="rtx-ada"), ["8.9"])
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "TensorRT-RTX build rtx-ada: started"
    assert any("Building engine from subgraph" in line for line in err)
    assert re.fullmatch(r"TensorRT-RTX build rtx-ada: done in 0:\d\d \(6/6\)", err[-1])


@pytest.mark.parametrize(
    ("model", "profiles", "ccs", "message"),
    [
        (
            "unsupported_onnx",
            {},
            ["8.9"],
            r"det\.onnx: TensorRT-RTX cannot parse the model: node det_node \(Det\): TensorRT-RTX 1\.\d.* cannot import this operator",
        ),
        (
            "retinaface_onnx",
            {},
            ["8.9"],
            r"input input has dynamic shape \(-1, 3, -1, -1\) and no min/opt/max profile; give --shapes input:",
        ),
        (
            "retinaface_onnx",
            {"images": RETINA_PROFILE["input"]},
            ["8.9"],
            r"shape profile for 'images': the model has no such input \(inputs: input\)",
        ),
        (
            "retinaface_onnx",
            RETINA_PROFILE,
            ["8.7"],
            r"cannot build for compute capability 8\.7 .*classic TensorRT on the device",
        ),
        ("retinaface_onnx", RETINA_PROFILE, [], r"needs at least one compute capability"),
    ],
)
def test_bad_requests_fail_with_a_message_and_write_nothing(
    model: str, profiles: dict, ccs: list[str], message: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    onnx_path: Path = request.getfixturevalue(model)
    with pytest.raises(BuildError, match=message):
        build_rtx(EngineRequest(onnx_path, tmp_path / "x.plan", profiles), ccs)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_build_cancels_it_and_writes_nothing(
    retinaface_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real SIGINT, delivered while TensorRT is inside build_serialized_network: Python raises
    # KeyboardInterrupt in the progress callback, which must cancel the build and surface afterwards.
    original = engine_common.ProgressBar.set_total
    sent: list[bool] = []

    def interrupt_once(self: engine_common.ProgressBar, total: int | None, done: int | None = None) -> None:
        if not sent and done:
            sent.append(True)
            signal.raise_signal(signal.SIGINT)
        original(self, total, done)

    monkeypatch.setattr(engine_common.ProgressBar, "set_total", interrupt_once)
    with pytest.raises(KeyboardInterrupt):
        build_rtx(EngineRequest(retinaface_onnx, tmp_path / "rf.plan", RETINA_PROFILE), ["8.9"])
    assert sent and list(tmp_path.iterdir()) == []


def test_fp32_gemm_on_turing_says_to_build_fp16(tmp_path: Path) -> None:
    # TensorRT-RTX cannot compile an FP32 GEMM for sm 7.5: the error says what to do instead
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 64])],
        [weight],
    )
    model_path = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model_path))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        BuildError, match=r"FP32 GEMM is not supported.*; build Turing \(rtx-turing\) plans with --precision fp16$"
    ):
        build_rtx(EngineRequest(model_path, out / "gemm.plan", {}, label="rtx-turing"), ["7.5"])
    assert list(out.iterdir()) == []
