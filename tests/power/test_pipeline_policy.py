"""The power policy inside a real pipeline: RetinaFace on ONNX Runtime, real sources, a Jetson sysroot.

Faces in every frame keep the device in its mode; a source without faces drives it idle (mode down,
fps capped through the pipeline's own control) and the end of the run restores everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.pipeline import Pipeline, PipelineOptions
from edge.power.config import PowerConfig
from edge.power.policy import PowerPolicy
from edge.sources import open_source


class Ticks:
    """A clock that advances one second per reading: time follows the frames, not the machine."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from edge.runtime import load
    from tests.runtime.bundles import write_bundle

    bundle = write_bundle(tmp_path_factory.mktemp("bundles") / "retinaface.bundle")
    with load(bundle, "onnxruntime-cpu", warmup=1, intra_op_threads=1) as m:
        yield m


@pytest.fixture(scope="module")
def faces_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge.cli.demo import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "faces.mp4", 8)


def run(model: Any, uri: str, jetson: Any, frames: int) -> tuple[list[tuple[str, str, dict[str, Any]]], Any]:
    events: list[tuple[str, str, dict[str, Any]]] = []
    config = PowerConfig.from_dict({"mode": "15W", "idle_mode": "7W", "idle_after": "3s", "fps_idle": 50})
    pipeline = Pipeline(model, [open_source(uri)], [], PipelineOptions(max_frames=frames, handle_signals=False))
    policy = PowerPolicy(config, clock=Ticks(), sysroot=jetson.root, threaded=False, events=pipeline.event)
    pipeline.observers.append(policy)

    class Seen:
        def on_start(self, stats: Any, control: Any) -> None: ...
        def on_frame(self, frame: Any, stats: Any) -> None: ...
        def on_stop(self, stats: Any) -> None: ...
        def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
            events.append((kind, message, data))

    pipeline.observers.append(Seen())
    stats = pipeline.run()
    policy.close()
    return events, stats


def test_faces_keep_the_mode(model: Any, faces_clip: Path, make_jetson: Any) -> None:
    jetson = make_jetson("orin-nano-8gb", mode_id=1)  # in 7W before the run; the run wants 15W
    events, stats = run(model, f"file://{faces_clip}", jetson, 8)
    assert stats.frames == 8
    assert [m for k, m, _ in events if k == "power"] == [
        "power mode 7W -> 15W (start)",
        "power mode 15W -> 7W (stop)",
    ]
    assert jetson.changes() == [["nvpmodel", "-m", "0"], ["nvpmodel", "-m", "1"]]
    assert jetson.mode_id() == 1


def test_no_faces_go_idle_with_the_pipeline_capped(model: Any, make_jetson: Any) -> None:
    jetson = make_jetson("orin-nano-8gb")
    events, stats = run(model, "test://?width=160&height=120", jetson, 6)
    assert stats.frames == 6
    power = [(m, d.get("fps_cap")) for k, m, d in events if k == "power"]
    assert power == [
        ("idle -> 7W: no detections for 3s (idle_after 3s)", 50.0),
        ("power mode 7W -> 15W (stop)", None),  # back to the mode from before the run
    ]
    caps = [d["fps_cap"] for k, _, d in events if k == "fps_cap"]
    assert caps == [50.0, None]  # the pipeline's own control: capped when idle, released at the end
    assert jetson.changes() == [["nvpmodel", "-m", "1"], ["nvpmodel", "-m", "0"]]
    assert jetson.mode_id() == 0


PIPELINE_SIGTERM_SCRIPT = """
import os, sys
from pathlib import Path
from edge.runtime import load
from edge.pipeline import Pipeline, PipelineOptions
from edge.power.config import PowerConfig
from edge.power.policy import PowerPolicy
from edge.sources import open_source

class Ready:
    said = False
    def on_start(self, stats, control): pass
    def on_frame(self, frame, stats):
        if not self.said:
            self.said = True
            print("ready", flush=True)
    def on_event(self, kind, message, data): pass
    def on_stop(self, stats): pass

with load(Path(sys.argv[1]), "onnxruntime-cpu", warmup=1, intra_op_threads=1) as model:
    pipeline = Pipeline(model, [open_source("test://?width=160&height=120&fps=20")], [], PipelineOptions())
    config = PowerConfig.from_dict({"mode": "7W", "clocks": "on"})
    policy = PowerPolicy(config, sysroot=sys.argv[2], events=pipeline.event)
    pipeline.observers += [policy, Ready()]
    pipeline.run()  # SIGTERM: the pipeline's own handler drains and stops
    print("stopped:", pipeline.stop_reason, flush=True)
os._exit(0)  # no atexit hooks: whatever was restored, the pipeline's stop restored it
"""


def test_sigterm_to_a_running_pipeline_restores_mode_and_clocks(
    tmp_path_factory: pytest.TempPathFactory, make_jetson: Any
) -> None:
    from tests.runtime.bundles import write_bundle

    bundle = write_bundle(tmp_path_factory.mktemp("bundles") / "retinaface.bundle")
    jetson = make_jetson("orin-nano-8gb")  # 15W (id 0), clocks not pinned
    floor = jetson.gpu_min()
    proc = subprocess.Popen(
        [sys.executable, "-c", PIPELINE_SIGTERM_SCRIPT, str(bundle), str(jetson.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"  # frames flow under the policy
        assert jetson.mode_id() == 1 and jetson.gpu_min() > floor
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == "stopped: SIGTERM\n"
    assert "Traceback" not in err
    assert jetson.mode_id() == 0 and jetson.gpu_min() == floor
    state = str(jetson.root / "var/lib/edge/jetson_clocks.conf")
    assert jetson.changes() == [
        ["nvpmodel", "-m", "1"],
        ["jetson_clocks", "--store", state],
        ["jetson_clocks"],
        ["jetson_clocks", "--restore", state],  # restored in reverse order, after the drain
        ["nvpmodel", "-m", "0"],
    ]
