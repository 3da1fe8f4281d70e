"""``edge bench`` on the RetinaFace bundle: trtexec's metric names, batch sizes, progress, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main
from edge.runtime.perf import summarize
from tests.runtime.bundles import build_retinaface


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_retinaface(tmp_path_factory.mktemp("bench") / "faces.bundle")


def test_json_report(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--batch", "2", "--iterations", "5", "--duration", "0", "--warmup", "1", "--json"]
    assert main(["bench", str(bundle), *args]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["backend"] == "onnxruntime-cpu" and result["batch"] == 2 and result["iterations"] == 5
    assert result["input_shapes"] == {"input": [2, 3, 640, 640]}
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert result["throughput_qps"] == pytest.approx(2 * 1000 / lat["mean"], rel=0.5)
    assert "h2d_ms" not in result  # ONNX Runtime on the CPU has no transfers to time
    assert "timing: 5/5" in captured.err and "warm-up: 1/1" in captured.err


def test_text_report(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(bundle), "--iterations", "3", "--duration", "0", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "Throughput: " in out and " qps" in out
    assert "Latency: min = " in out and "percentile(99%) = " in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--batch", "9"], "this bundle takes batches of 1..8; rebuild it with a batch profile: `edge build "),
        (["--batch", "9"], "--min-shapes input:1x3x640x640 --max-shapes input:9x3x640x640 --force`"),
        (["--iterations", "0"], "--iterations must be >= 1"),
    ],
)
def test_bad_arguments(bundle: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    assert main(["bench", str(bundle), *args]) == 2
    assert fragment in capsys.readouterr().err


def test_cuda_graph_option(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--cuda-graph`` lists the runtime's strategies; off TensorRT-RTX it is accepted and ignored."""
    from edge.cli import make_parser
    from edge.runtime.select import CUDA_GRAPH

    assert [make_parser().parse_args(["bench", "B", "--cuda-graph", g]).cuda_graph for g in CUDA_GRAPH] == list(
        CUDA_GRAPH
    )
    args = ["--iterations", "2", "--duration", "0", "--warmup", "0", "--cuda-graph", "whole", "--json"]
    assert main(["bench", str(bundle), *args]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "onnxruntime-cpu"
    with pytest.raises(SystemExit) as info:
        main(["bench", str(bundle), "--cuda-graph", "all"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "invalid choice: 'all'" in err
    assert "(choose from " + ", ".join(repr(g) for g in CUDA_GRAPH) + ")" in err  # no other choice offered


def test_summarize_percentiles() -> None:
    s = summarize([float(v) for v in range(1, 101)])
    assert (s["min"], s["median"], s["max"]) == (1.0, 50.5, 100.0)
    assert s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)


def test_batch_hint_keeps_the_original_flags_and_its_command_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's tour: `edge bench yolo.bundle --batch 4` on a batch-1 bundle. The error carries the bundle's own
    build command with a batch profile and --force; running that command gives a bundle that takes batch 4."""
    import shlex

    models = Path(__file__).resolve().parents[1] / "data" / "models"
    source = tmp_path / "yolo.onnx"
    source.write_bytes((models / "yolov8n-detect-dyn.onnx").read_bytes())
    bundle = tmp_path / "yolo.bundle"
    flags = ["--target", "cpu", "--no-simplify", "--shapes", "images:1x3x256x256", "--task", "detect"]
    assert main(["build", str(source), "-o", str(bundle), *flags, "--decoder", "yolov8"]) == 0
    capsys.readouterr()
    assert main(["bench", str(bundle), "--batch", "4", "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --batch 4: this bundle takes batches of 1..1; rebuild it with a batch profile: `")
    command = err.split("`")[1]
    words = shlex.split(command)
    assert words[:3] == ["edge", "build", str(source)] and "--shapes" not in words
    assert "--decoder" in words and words[-5:] == [
        "--min-shapes",
        "images:1x3x256x256",
        "--max-shapes",
        "images:4x3x256x256",
        "--force",
    ]
    assert main(words[1:]) == 0
    capsys.readouterr()
    assert (
        main(["bench", str(bundle), "--batch", "4", "--iterations", "1", "--duration", "0", "--warmup", "0", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["input_shapes"] == {"images": [4, 3, 256, 256]}


def test_duration_sets_a_minimum_time_like_trtexec(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --iterations given, at least 10 calls and at least --duration seconds of them (trtexec's defaults
    are --iterations=10 --duration=3): a slow model on a CPU is not held for 100 calls, a fast one is timed long
    enough. The sum of the per-call latencies is at least the duration asked for."""
    assert main(["bench", str(bundle), "--duration", "0.5", "--warmup", "0", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["iterations"] >= 10
    assert result["latency_ms"]["mean"] * result["iterations"] >= 500 * 0.95
    last = [line for line in captured.err.splitlines() if line.startswith("timing: ")][-1]
    assert last == f"timing: {result['iterations']}/{result['iterations']}"
