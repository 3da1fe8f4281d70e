"""The conformance zoo tool (benchmarks/zoo.py) without torch: its metrics on hand-made boxes, and one real run.

The real run takes a committed tiny Ultralytics export as if the zoo had exported it (the export step is
skipped for models already in the cache), builds it with `edge build` for the cpu target at fp32 and fp16,
runs the artifacts with ONNX Runtime and writes zoo.json and zoo.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.zoo import Row, box_f1, markdown, merged, select

ROOT = Path(__file__).resolve().parents[2]


def _boxes(*rows: tuple[float, float, float, float, int, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.array(rows, np.float32).reshape(-1, 6)
    return a[:, :4], a[:, 4].astype(np.int64), a[:, 5]


def test_box_f1_hand_cases() -> None:
    a = _boxes((0, 0, 10, 10, 1, 0.9), (20, 20, 30, 30, 2, 0.8))
    assert box_f1([(a, a)]) == 1.0
    # the same box with a different class is not found: recall 1/2, precision 1/2
    b = _boxes((0, 0, 10, 10, 1, 0.9), (20, 20, 30, 30, 3, 0.8))
    assert box_f1([(a, b)]) == pytest.approx(0.5)
    # a weak box (below 0.5) only one side kept is neither a miss nor a false alarm
    c = _boxes((0, 0, 10, 10, 1, 0.9), (20, 20, 30, 30, 2, 0.8), (50, 50, 60, 60, 0, 0.3))
    assert box_f1([(a, c)]) == 1.0
    # shifted by 4 px on a 10 px box: IoU 6/14 < 0.5, a miss both ways
    d = _boxes((4, 0, 14, 10, 1, 0.9), (20, 20, 30, 30, 2, 0.8))
    assert box_f1([(a, d)]) == pytest.approx(0.5)
    # boxes clipped to nothing at the border match their identical twin
    e = _boxes((0, 5, 0, 9, 1, 0.9), (30, 30, 20, 25, 1, 0.8))  # no area; inverted (x2 < x1)
    assert box_f1([(e, e)]) == 1.0
    # no box >= 0.5 on either side: nothing to judge (not a perfect score)
    weak = _boxes((0, 0, 10, 10, 1, 0.3))
    assert box_f1([(weak, weak)]) is None and box_f1([(weak, weak)], strong=0.0) == 1.0


def test_merge_keeps_other_rows_and_table_counts(tmp_path: Path) -> None:
    old = [
        Row("yolov8n-detect", "ultralytics", "detect", p, t, "ok", 1.0, "m", "")
        for p in ("fp32", "fp16")
        for t in ("cpu", "rtx-ada")
    ]
    (tmp_path / "zoo.json").write_text(json.dumps([r.to_json() for r in old]))
    new = [Row("yolov8n-detect", "ultralytics", "detect", "fp16", "rtx-ada", "unsupported", None, "m", "NonZero")]
    rows = merged(new, tmp_path)
    assert len(rows) == 4 and [r.build for r in rows] == ["ok", "ok", "ok", "unsupported"]
    table = markdown(rows)
    assert "| rtx-ada | fp16 | 0 | 0 | 1 |" in table and "rtx-ada: NonZero" in table


def test_select() -> None:
    assert {v.name for v in select(["yolo11n-*"], quick=False)} >= {"yolo11n-detect", "yolo11n-seg"}
    assert all(v.quick for v in select(None, quick=True))
    assert len(select(None, quick=False)) >= 40


@pytest.mark.slow
def test_real_run_on_a_committed_export(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "results"
    cache.mkdir()
    # the committed tiny YOLOv8 export stands in for the zoo's yolov8n-detect (same layout, static 224)
    shutil.copy(ROOT / "tests" / "data" / "models" / "yolov8n-detect-static.onnx", cache / "yolov8n-detect.onnx")
    cmd = [sys.executable, "-m", "benchmarks.zoo", "--only", "yolov8n-detect", "--cache", str(cache), "--out", str(out)]
    cmd += ["--targets", "cpu", "--precisions", "fp32,fp16"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "yolov8n-detect fp16 cpu: box F1" in proc.stdout  # progress while it runs
    rows = json.loads((out / "zoo.json").read_text())
    assert {(r["precision"], r["target"]) for r in rows} == {("fp32", "cpu"), ("fp16", "cpu")}
    assert set(rows[0]) == {"model", "source", "task", "precision", "target", "build", "agree", "metric", "note"}
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    assert fp32["build"] == "ok" and fp32["agree"] == 1.0  # the kit's FP32 ONNX decodes like the export itself
    assert "| yolov8n-detect | ultralytics | detect | fp16 |" in (out / "zoo.md").read_text()


def test_unknown_pattern_is_one_error_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.zoo", "--only", "no-such-model"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: no zoo variant matches no-such-model; list them with --list"]
