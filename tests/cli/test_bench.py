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
    assert main(["bench", str(bundle), "--batch", "2", "--iterations", "5", "--warmup", "1", "--json"]) == 0
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
    assert main(["bench", str(bundle), "--iterations", "3", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "Throughput: " in out and " qps" in out
    assert "Latency: min = " in out and "percentile(99%) = " in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--batch", "9"], "this bundle takes batches of 1..8"), (["--iterations", "0"], "--iterations must be >= 1")],
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
    assert main(["bench", str(bundle), "--iterations", "2", "--warmup", "0", "--cuda-graph", "whole", "--json"]) == 0
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
