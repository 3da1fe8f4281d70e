"""Several GPUs in one box: ``--gpu INDEX|UUID``, per-device selection, and the backend's CUDA device.

Stand-ins (hardware boundary, there is no GPU here):
- the ``nvidia-smi`` stand-in (conftest) lists an RTX 3090 as index 0 and an RTX 4090 as index 1, as the
  driver numbers them (PCI bus order), with their UUIDs;
- ``cuda_devices`` answers ``cudaGetDeviceCount``/``cudaGetDeviceProperties`` with CUDA's own order, the
  4090 first (CUDA's default FASTEST_FIRST), so an index taken for a CUDA ordinal would pick the wrong GPU.
  It does not model memory, streams or kernels.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import platforms
from edge.backends import cuda
from edge.errors import ConfigError, EngineError
from edge.runtime import Facts, make_backend
from edge.runtime.bundle import Bundle
from edge.runtime.select import select_artifact
from tests.platforms.conftest import smi_uuid
from tests.runtime.bundles import plan_artifact, write_bundle

ROWS = ["NVIDIA GeForce RTX 3090, 8.6, 550.54.14", "NVIDIA GeForce RTX 4090, 8.9, 550.54.14"]
AMPERE = plan_artifact("engine-rtx-ampere.plan", targets=("rtx-ampere",), ccs=("8.6",), data=b"ampere plan")
ADA = plan_artifact("engine-rtx-ada.plan", targets=("rtx-ada",), ccs=("8.9",), data=b"ada plan")


@pytest.fixture
def two_gpus(fake_nvidia_smi: Any, make_sysroot: Any) -> Path:
    fake_nvidia_smi(ROWS)
    return make_sysroot()


def _facts(sysroot: Path, gpu: str | None) -> Facts:
    machine = platforms.detect(sysroot, gpu=gpu)
    return Facts(**{**Facts.from_machine(machine, cuda=(True, "")).__dict__, "tensorrt_rtx_version": "1.7.1.116"})


@pytest.mark.parametrize(
    ("gpu", "target", "name", "index"),
    [
        (None, "rtx-ampere", "NVIDIA GeForce RTX 3090", 0),
        ("0", "rtx-ampere", "NVIDIA GeForce RTX 3090", 0),
        ("1", "rtx-ada", "NVIDIA GeForce RTX 4090", 1),
        (smi_uuid(1), "rtx-ada", "NVIDIA GeForce RTX 4090", 1),
        (smi_uuid(1)[:10].lower(), "rtx-ada", "NVIDIA GeForce RTX 4090", 1),  # a unique prefix, any case
    ],
)
def test_gpu_option_picks_the_device_the_facts_describe(
    two_gpus: Path, gpu: str | None, target: str, name: str, index: int
) -> None:
    m = platforms.detect(two_gpus, gpu=gpu)
    assert (m.platform.id, m.gpu_name, m.gpu_index, m.gpu_uuid, m.gpu_count) == (
        target,
        name,
        index,
        smi_uuid(index),
        2,
    )
    assert f"2 GPUs, using GPU {index}" in m.reason
    listed = m.to_dict()["gpus"]
    assert [(g["index"], g["uuid"], g["target"]) for g in listed] == [
        (0, smi_uuid(0), "rtx-ampere"),
        (1, smi_uuid(1), "rtx-ada"),
    ]


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ("2", "--gpu 2: is not a GPU of this machine (this machine: GPU 0 'NVIDIA GeForce RTX 3090'"),
        ("GPU-", "give a GPU index (0, 1, ...) or UUID"),
        ("GPU-99999999", "--gpu GPU-99999999: is not a GPU of this machine"),
        ("rtx4090", "--gpu 'rtx4090': give a GPU index (0, 1, ...) or UUID (GPU-...)"),
    ],
)
def test_a_wrong_gpu_is_one_clear_error(two_gpus: Path, gpu: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        platforms.detect(two_gpus, gpu=gpu)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_gpu_option_without_a_gpu_or_on_a_jetson(make_sysroot: Any) -> None:
    from tests.platforms.conftest import R36_4_3

    with pytest.raises(ConfigError, match="--gpu 0: this machine has no NVIDIA GPU"):
        platforms.detect(make_sysroot(), nvidia_smi=None, gpu="0")
    jetson = make_sysroot(release=R36_4_3, compatible=["nvidia,p3768-0000+p3767-0005", "nvidia,tegra234"])
    assert platforms.detect(jetson, gpu="0").gpu_index == 0
    with pytest.raises(ConfigError, match="a Jetson has one integrated GPU, GPU 0"):
        platforms.detect(jetson, gpu="1")


def test_each_gpu_of_a_mixed_box_gets_its_own_plan(two_gpus: Path, tmp_path: Path) -> None:
    """An RTX 3090 and a 4090 in one box: the same bundle, one plan per device, each run on its GPU."""
    bundle = Bundle.open(write_bundle(tmp_path / "mixed.bundle", plans=[AMPERE, ADA]))
    for gpu, plan in (("0", AMPERE[0]), ("1", ADA[0])):
        facts = _facts(two_gpus, gpu)
        choice = select_artifact(facts, bundle.manifest.artifacts)
        assert choice.artifact.file == plan.file
        backend = make_backend(bundle, choice, state_dir=tmp_path / "state", device=facts.device)
        assert backend._device_request == smi_uuid(int(gpu))  # the UUID, not nvidia-smi's index


# ---- CUDA's numbering -----------------------------------------------------------------------------------
@pytest.fixture
def cuda_devices(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """CUDA sees the 4090 as ordinal 0 and the 3090 as ordinal 1 (FASTEST_FIRST)."""
    order = [smi_uuid(1), smi_uuid(0)]
    calls: list[tuple[str, ...]] = []

    def raw(uuid: str) -> bytes:
        return bytes.fromhex(uuid[4:].replace("-", ""))

    def call(name: str, *args: Any) -> Any:
        calls.append((name, *map(str, args)))
        if name == "cudaGetDeviceCount":
            return len(order)
        if name == "cudaGetDeviceProperties":
            return SimpleNamespace(uuid=SimpleNamespace(bytes=raw(order[args[0]])))
        return None

    monkeypatch.setattr(cuda, "call", call)
    return calls


def test_uuid_text_matches_nvidia_smi() -> None:
    raw = bytes.fromhex("1a2b3c4d5e6f708192a3b4c5d6e7f801")
    assert cuda.uuid_text(SimpleNamespace(bytes=raw)) == "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f801"
    assert cuda.uuid_text(b"short") is None


def test_a_gpu_uuid_is_found_among_cudas_devices(cuda_devices: list[tuple[str, ...]]) -> None:
    assert cuda.resolve_device(smi_uuid(0)) == 1  # nvidia-smi's GPU 0 (the 3090) is CUDA's ordinal 1
    assert cuda.resolve_device(smi_uuid(1).upper().replace("GPU-", "GPU-")) == 0
    assert cuda.resolve_device(1) == 1
    with pytest.raises(EngineError, match=r"CUDA device 2 does not exist \(CUDA sees 2 device"):
        cuda.resolve_device(2)


def test_a_gpu_hidden_from_cuda_says_so(cuda_devices: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(
        EngineError, match=r"GPU GPU-2.* is not among the 2 device\(s\) CUDA sees \(CUDA_VISIBLE_DEVICES=0,1"
    ):
        cuda.resolve_device("GPU-20000000-1111-2222-3333-444444444444")


def test_the_backend_sets_its_device_before_its_stream(
    cuda_devices: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT backend load on nvidia-smi's GPU 1: cudaSetDevice(CUDA ordinal 0) comes before any GPU work
    (the load stops at the stand-in's missing TensorRT; device and stream are what is checked)."""
    from edge.backends.tensorrt_rtx import TensorRTRTXBackend

    monkeypatch.setattr(cuda, "cuda_available", lambda: (True, ""))

    class Stop(Exception):
        pass

    def stop(device: int = 0) -> Any:
        cuda_devices.append(("device_info", str(device)))
        raise Stop

    monkeypatch.setattr(cuda, "device_info", stop)
    backend = TensorRTRTXBackend(b"plan", device=smi_uuid(1))
    monkeypatch.setattr(backend, "_import_trt", lambda: SimpleNamespace(__version__="1.7.1.116"))
    with pytest.raises(Stop):
        backend.load()
    assert ("cudaSetDevice", "0") in cuda_devices
    assert cuda_devices.index(("cudaSetDevice", "0")) < cuda_devices.index(("device_info", "0"))
    assert backend._device == 0


# ---- the CLI ----------------------------------------------------------------------------------------------
def test_edge_info_lists_every_gpu(two_gpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    assert main(["info", "--sysroot", str(two_gpus), "--gpu", "1"]) == 0
    rows = [line.split(None, 2) for line in capsys.readouterr().out.splitlines() if line.startswith("GPU ")]
    assert [r[:2] for r in rows if r[1] in ("0", "1")] == [["GPU", "0"], ["GPU", "1"]]
    listed = {r[1]: r[2].strip() for r in rows if r[1] in ("0", "1")}
    assert listed["0"] == f"NVIDIA GeForce RTX 3090, sm 8.6, rtx-ampere, {smi_uuid(0)}"
    assert listed["1"] == f"NVIDIA GeForce RTX 4090, sm 8.9, rtx-ada, {smi_uuid(1)} (selected)"


@pytest.mark.parametrize("command", ["info", "infer", "bench", "doctor", "run"])
def test_every_runtime_command_takes_gpu(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import make_parser

    parser = make_parser()
    argv = {"info": [], "infer": ["b", "i.jpg"], "bench": ["b"], "doctor": ["b"], "run": ["--model", "b"]}[command]
    args = parser.parse_args([command, *argv, "--gpu", "GPU-10000000"])
    assert args.gpu == "GPU-10000000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "1"), ("GPU-10000000-1111-2222-3333-444444444444", "GPU-10000000-1111-2222-3333-444444444444"), (None, None)],
)
def test_run_config_gpu(value: object, expected: str | None) -> None:
    from edge.config import RunConfig

    model: dict[str, object] = {"bundle": "face.bundle"}
    if value is not None:
        model["gpu"] = value
    cfg = RunConfig.from_dict({"model": model, "source": "file://clip.mp4"})
    assert cfg.model.gpu == expected


@pytest.mark.parametrize("value", [-1, True, "fast", [0]])
def test_run_config_bad_gpu(value: object) -> None:
    from edge.config import RunConfig

    with pytest.raises(ConfigError, match=r"model\.gpu: expected a GPU index \(0, 1, \.\.\.\) or UUID"):
        RunConfig.from_dict({"model": {"bundle": "face.bundle", "gpu": value}, "source": "file://clip.mp4"})


def test_wrong_gpu_on_the_command_line_is_one_error_line(two_gpus: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bundle = write_bundle(tmp_path / "b.bundle")
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "bench", str(bundle), "--gpu", "7", "--iterations", "1"],
        capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --gpu 7: is not a GPU of this machine")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("rows", "gpu", "device"),
    [
        (ROWS[:1], None, 0),  # a lone GPU: CUDA's device 0, as any CUDA program (MIG instances included)
        (ROWS[:1], "0", smi_uuid(0)),  # named: found by UUID
        (ROWS, None, smi_uuid(0)),  # several: nvidia-smi's GPU 0 by UUID, whatever CUDA's order
        (ROWS, "1", smi_uuid(1)),
    ],
)
def test_what_the_backend_is_told(
    fake_nvidia_smi: Any, make_sysroot: Any, rows: list[str], gpu: str | None, device: int | str
) -> None:
    fake_nvidia_smi(rows)
    machine = platforms.detect(make_sysroot(), gpu=gpu)
    assert Facts.from_machine(machine, cuda=(True, "")).device == device
