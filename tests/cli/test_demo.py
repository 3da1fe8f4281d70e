"""``edge demo``: builds the packaged RetinaFace once (cached), plays the photo clip, writes events and video."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_demo_builds_once_runs_and_prints_where_outputs_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """30 frames: the faces move about 15 pixels a frame, slow enough for IoU matching to follow the smaller one."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert main(["demo", "--frames", "30", "--cache-dir", str(cache), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "bundle: building" in first and "clip: making" in first
    assert first.startswith("edge demo: the RetinaFace face detector on a 30-frame clip")
    assert "run: 30 frames through ONNX Runtime on the CPU, faces tracked (bytetrack)" in first
    assert f"next: your own camera: edge run --model {cache / 'retinaface.bundle'} --source v4l2://" in first
    assert "output: " not in first, "each output is named once, by the demo's own lines"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["frame_id"] for e in events] == list(range(30))
    # two photos, one face each: astronaut and grace_hopper (or camera where matplotlib is absent)
    assert all(len(e["detections"]) == 2 and e["detections"][0]["label"] == "face" for e in events)
    assert f"events: {out / 'events.jsonl'}" in first and f"video:  {out / 'demo.mp4'}" in first
    assert "faces: 60 detections in 30 frames at" in first
    # the clip's motion is known: the top face goes left to right, the bottom one right to left, each
    # crossing x=320 once; the line is drawn bottom to top, so left to right is "in"
    ids = {d["track_id"] for e in events[1:] for d in e["detections"]}
    assert len(ids) == 2 and None not in ids
    crossings = [(x["direction"], x["track_id"]) for e in events for x in e["events"]]
    top = {d["track_id"] for e in events[1:] for d in e["detections"] if d["box"][1] < 200}
    assert len(crossings) == 2 and ("in", top.pop()) in crossings
    assert "line middle: in 1  out 1" in first and "track ids: #1, #2 (2 faces)" in first
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30)
    cap.release()
    manifest = json.loads((cache / "retinaface.bundle" / "manifest.json").read_text())
    assert manifest["postprocess"]["decoder"] == "retinaface"

    assert main(["demo", "--frames", "30", "--cache-dir", str(cache), "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "(cached)" in second and "bundle: building" not in second, "the bundle is built once"


def test_importing_the_demo_command_stays_lean() -> None:
    code = (
        "import sys, edge.cli, edge.cli.demo, edge.cli.run; edge.cli.make_parser(); "
        "print(sorted(m for m in ('builders', 'onnx', 'onnxsim', 'onnxslim', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_demo_photos_without_matplotlib_use_the_camera_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo extra installs scikit-image only: its grayscale camera photo stands in for grace_hopper."""
    import builtins

    from edge.cli.demo import _photos

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    with_mpl = _photos()
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    without = _photos()
    assert len(with_mpl) == len(without) == 2
    assert with_mpl[0].shape == without[0].shape == (512, 512, 3)  # astronaut
    assert with_mpl[1].shape != without[1].shape
    assert without[1].shape == (512, 512, 3) and (without[1][..., 0] == without[1][..., 2]).all()  # gray camera
