"""scripts/gpu_check.sh and scripts/gpu_check.py where there is no GPU (the GPU run itself: on hardware).

- no GPU at all, and an ``nvidia-smi`` stand-in that fails as it does when the driver is not loaded (its
  real message): one line, exit 2;
- the whole sequence on this CPU machine (``--allow-no-gpu``): a real bundle is built and checked by
  ``edge doctor``, the GPU tests skip, the report is written;
- read only: the scripts call no setter (checked against the real pynvml module's names);
- the nvidia-smi telemetry read against a stand-in that answers only that exact query (it models the CSV
  nvidia-smi prints, nothing else).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.backends.cuda import cuda_available

ROOT = Path(__file__).resolve().parents[2]
SH = ROOT / "scripts" / "gpu_check.sh"
PY = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402


def _stand_in(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(exist_ok=True)
    script = bindir / name
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _run_sh(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root").mkdir(exist_ok=True)
    env = {**os.environ, "PATH": path, "EDGE_SYSROOT": str(tmp_path / "root")}
    return subprocess.run(["bash", str(SH)], capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("nvidia-smi", path="/usr/bin:/bin") is not None, reason="nvidia-smi is installed")
def test_no_gpu_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _run_sh(tmp_path, "/usr/bin:/bin")
    assert proc.returncode == 2
    assert proc.stderr == "gpu_check: no NVIDIA GPU here (no nvidia-smi on PATH and no /etc/nv_tegra_release)\n"
    assert proc.stdout == ""


def test_driver_not_loaded_is_one_line_and_exit_2(tmp_path: Path) -> None:
    message = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running."
    )
    _stand_in(tmp_path / "bin", "nvidia-smi", f"print({message!r})\nsys.exit(9)")
    proc = _run_sh(tmp_path, f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert proc.returncode == 2
    assert proc.stderr == f"gpu_check: no NVIDIA GPU answers here (nvidia-smi -L: {message})\n"


@pytest.mark.skipif(cuda_available()[0], reason="this machine has a GPU: the check would run for real")
def test_python_part_refuses_without_a_gpu_too() -> None:
    proc = subprocess.run([sys.executable, str(PY)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert re.fullmatch(r"gpu_check: no usable NVIDIA GPU here \(.+\)\n", proc.stderr), proc.stderr


@pytest.mark.slow
def test_the_whole_sequence_on_a_cpu_machine(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(PY), "--allow-no-gpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (report,) = tmp_path.glob("gpu-*.md")
    text = report.read_text()
    rows = dict(re.findall(r"^\| ([^|]+?) \| (ok|failed|skipped) \|", text, re.M))
    assert rows == {
        "edge info": "ok",
        "edge build (YOLOv8n, auto + cpu)": "ok",
        "edge doctor": "ok",
        "pytest tests/gpu -m gpu": "ok",
        "telemetry read": "skipped",
    }
    assert re.search(r"GPU tests: \d+ skipped", text)
    assert "model.onnx on onnxruntime-cpu: reference" in text  # doctor's own output, kept in the report
    assert "| onnxruntime |" in text and "| python |" in text
    progress = [line for line in proc.stderr.splitlines() if line.startswith("gpu_check: ")]
    assert progress[-1].startswith(f"gpu_check: report: {report} (ok, ")


def test_the_check_only_reads_gpu_settings() -> None:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    for label, (fn, _) in gpu_check.NVML_READS.items():
        assert fn.startswith("nvmlDeviceGet") and callable(getattr(pynvml, fn)), label
    setters = re.compile(r"nvmlDeviceSet|nvmlDeviceReset|nvidia-smi[^\n]*\s(-pl|--power-limit|-lgc|--lock-gpu-clocks|"
                         r"-rgc|-pm|-ac|-rac|-r)\b|nvpmodel\s+-m|jetson_clocks(?!\s+--show)")  # fmt: skip
    for path in (SH, PY):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not setters.search(code), path.name


def test_nvidia_smi_telemetry_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    query = f"--query-gpu={gpu_check.SMI_TELEMETRY}"
    body = (
        f"if sys.argv[1:] != [{query!r}, '--format=csv']:\n    sys.exit(2)\n"
        "print('index, name, power.draw [W], power.limit [W], power.default_limit [W], temperature.gpu, "
        "clocks.current.sm [MHz], clocks.max.sm [MHz], utilization.gpu [%], memory.used [MiB], "
        "memory.total [MiB], pstate')\n"
        "print('0, NVIDIA GeForce RTX 4090, 31.42 W, 450.00 W, 450.00 W, 38, 210 MHz, 3120 MHz, 0 %, 1 MiB, "
        "24564 MiB, P8')"
    )
    _stand_in(tmp_path / "bin", "nvidia-smi", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (row,) = gpu_check.smi_telemetry()
    assert row["name"] == "NVIDIA GeForce RTX 4090"
    assert (row["power.draw [W]"], row["power.limit [W]"], row["pstate"]) == ("31.42 W", "450.00 W", "P8")


def test_report_name_and_pytest_summary() -> None:
    assert gpu_check.slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    out = "SKIPPED [1] tests/gpu/x.py:3: TensorRT-RTX does not run here\n===== 9 passed, 1 skipped in 12.3s ====="
    assert gpu_check.parse_pytest(out) == (
        "9 passed, 1 skipped in 12.3s",
        ["SKIPPED [1] tests/gpu/x.py:3: TensorRT-RTX does not run here"],
    )
