"""``edge run``: flags, config files, errors as one line with exit codes, signals drain the pipeline."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main
from tests.runtime.bundles import write_bundle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("run") / "retinaface.bundle")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge.cli.demo import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "faces.mp4", 8)


def summary_frames(text: str) -> int:
    m = re.search(r"^frames: (\d+)\s+fps: [\d.]+\s+dropped: \d+", text, re.M)
    assert m, text
    return int(m.group(1))


def test_run_with_flags(bundle: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, video = tmp_path / "e.jsonl", tmp_path / "v.mp4"
    code = main(["run", "--model", str(bundle), "--source", f"file://{clip}", "--sink", f"jsonl://{events}",
                 "--sink", f"file://{video}", "--threads", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and summary_frames(out) == 8
    assert re.search(r"stage ms \(mean\): preprocess [\d.]+\s+infer [\d.]+\s+postprocess [\d.]+\s+sink [\d.]+", out)
    assert "latency capture->result: p50" in out and str(events) in out and str(video) in out
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 8 and all(len(e["detections"]) == 2 for e in lines)
    assert video.is_file()


def test_run_with_a_config_file_and_overriding_flags(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {{bundle: {bundle}, threads: 1}}\nsource: test://?width=160&height=120\n"
        f"sinks: [jsonl://{tmp_path}/e.jsonl]\npipeline: {{stride: 2, max_frames: 50}}\n"
    )
    assert main(["run", str(cfg), "--max-frames", "5"]) == 0
    assert summary_frames(capsys.readouterr().out) == 5
    ids = [json.loads(line)["frame_id"] for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert ids == [0, 2, 4, 6, 8]


def test_events_to_stdout_keep_the_summary_on_stderr(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", "--model", str(bundle), "--source", "test://?width=96&height=64&frames=3", "--sink", "jsonl://-"])
        == 0
    )
    captured = capsys.readouterr()
    assert [json.loads(line)["frame_id"] for line in captured.out.splitlines()] == [0, 1, 2]
    assert summary_frames(captured.err) == 3


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--source", "test://"], 2, "model: required"),
        (["--model", "{bundle}"], 2, "source: required"),
        (["--model", "{bundle}", "--source", "webcam://0"], 2, "unsupported source scheme webcam:// in 'webcam://0'"),
        (
            ["--model", "{bundle}", "--source", "file:///nope.mp4"],
            6,
            "could not open file:///nope.mp4: /nope.mp4 not found",
        ),
        (
            ["--model", "{bundle}", "--source", "test://", "--sink", "smtp://x"],
            2,
            "sinks[0]: unsupported sink scheme smtp://",
        ),
        (["--model", "{bundle}", "--source", "test://", "--stride", "0"], 2, "pipeline.stride: must be >= 1"),
        (
            ["--model", "{bundle}", "--source", "test://", "--duration", "later"],
            2,
            "pipeline.duration: expected a duration",
        ),
        (["--model", "{tmp}/missing.bundle", "--source", "test://?frames=1"], 4, "missing.bundle"),
        (["{tmp}/missing.yaml"], 2, "missing.yaml: config file not found"),
        (["--model", "{bundle}", "--source", "test://", "--progress", "-1"], 2, "--progress: must be 0 (never) or"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    argv = ["run", *(a.format(bundle=bundle, tmp=tmp_path) for a in args)]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message.format(tmp=tmp_path) in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: b\nsource: [unclosed\n", "not valid YAML (line 3): expected ',' or ']'"),
        ("- model: b\n", "expected a mapping with model, source and sinks, got a list"),
        ("", "the file is empty"),
    ],
)
def test_a_bad_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and message in err[0], err


def test_a_sink_that_cannot_open_leaves_no_files_behind(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "out"
    argv = ["run", "--model", str(bundle), "--source", "test://?width=96&height=64&frames=3",
            "--sink", f"{out}/events.jsonl", "--sink", f"{out}/video.mp4", "--sink", "display://"]  # fmt: skip
    assert main(argv) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not open sink display://: no display here")
    assert not out.exists(), "the events and video sinks opened before the failing one created nothing"


@pytest.mark.parametrize(("every", "expected"), [("0.000001", 3), ("0", 0)], ids=["every-frame", "never"])
def test_progress_lines_while_running(
    bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, every: str, expected: int
) -> None:
    caplog.set_level(logging.INFO, logger="edge.run")
    argv = ["run", "--model", str(bundle), "--source", "test://?width=96&height=64&frames=3", "--progress", every]
    assert main(argv) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert len(lines) == expected
    assert [line.split()[1] for line in lines] == ["1", "2", "3"][:expected]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_every_processed_frame_is_written(bundle: Path, tmp_path: Path, sig: signal.Signals) -> None:
    video = tmp_path / "v.mp4"
    cmd = [sys.executable, "-m", "edge", "run", "--model", str(bundle), "--threads", "1",
           "--source", "test://?width=320&height=240&fps=60", "--sink", "jsonl://-", "--sink", f"file://{video}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(10)]  # blocks until ten events are out
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    lines += out.splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    assert proc.returncode == 0, err
    assert summary_frames(err) == len(events) >= 10, "number of events == number of frames processed"
    assert f"stopped: {sig.name}" in err
    assert [e["frame_id"] for e in events] == sorted(e["frame_id"] for e in events)
    assert video.is_file(), "the video was finished and renamed into place"


@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="a Jetson: power modes work here")
def test_power_section_attaches_the_power_policy(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {bundle}\nsource: test://?width=96&height=64&frames=3\npower: {{mode: MAXN}}\n")
    assert main(["run", str(cfg)]) == 8  # NotJetsonError from the policy's on_start: this machine is not a Jetson
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a Jetson" in err and len(err.strip().splitlines()) == 1


def test_http_section_serves_the_running_pipeline(bundle: Path, tmp_path: Path) -> None:
    import socket
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _attempt in range(3):  # a free port can be taken by another process before the run binds it
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"model: {{bundle: {bundle}, threads: 1}}\nsource: test://?width=160&height=120&fps=30\n"
            f"sinks: [jsonl://-]\nhttp: {{listen: 127.0.0.1:{port}, auth: none}}\n"
        )
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", str(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first:
            break
        _, err = proc.communicate(timeout=60)
        assert "listen" in err or "in use" in err, err
    try:
        json.loads(first)
        for _ in range(4):
            json.loads(proc.stdout.readline())  # frames are flowing, so the API is up
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10).read())
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert status["pipeline"]["frames"] >= 4, status  # the 5th line may be out before observers hear of it
    assert status["pipeline"]["sources"] == {"test://?width=160&height=120&fps=30": "running"}, status
    assert {"preprocess", "infer", "postprocess", "sink"} <= set(status["pipeline"]["stage_ms"]), status
    assert "fps" in metrics


def test_events_reader_going_away_is_a_clear_error(bundle: Path) -> None:
    cmd = [sys.executable, "-m", "edge", "run", "--model", str(bundle), "--source", "test://?width=96&height=64",
           "--sink", "jsonl://-"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    json.loads(proc.stdout.readline())
    proc.stdout.close()  # like `edge run ... | head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 6
    assert (
        err.strip().splitlines()[-1] == "error: sink jsonl://- stage: the reader of the output went away (broken pipe)"
    )
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames: the faces move about 15 pixels a frame, slow enough for IoU matching."""
    from edge.cli.demo import make_clip

    return make_clip(tmp_path_factory.mktemp("clip30") / "faces.mp4", 30)


def test_tracker_flag_puts_track_ids_in_the_events(
    bundle: Path, slow_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "e.jsonl"
    argv = ["run", "--model", str(bundle), "--source", f"file://{slow_clip}", "--sink", str(events),
            "--tracker", "iou", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tracks: 2 alive at the end (iou)" in out and re.search(r"stage ms \(mean\): .* track [\d.]+", out)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert {d["track_id"] for e in lines[1:] for d in e["detections"]} == {1, 2}
    assert all("events" not in e for e in lines), "no analytics configured: no events key"


def test_analytics_events_reach_an_mqtt_broker_with_credentials_from_the_config(
    bundle: Path, slow_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.sinks.mosquitto import Broker, Subscriber

    tool = Path(Broker(tmp_path / "probe").binary).parent.parent / "bin" / "mosquitto_passwd"
    if not tool.is_file():
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([str(tool), "-b", "-c", str(passwd), "edge", "door-secret"], check=True)
    broker = Broker(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\n").start()
    try:
        sub = Subscriber(broker.port, "site/door", username="edge", password="door-secret")
        (tmp_path / "mqtt-password").write_text("door-secret\n")
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"model: {{bundle: {bundle}, threads: 1}}\nsource: file://{slow_clip}\n"
            f"sinks: [jsonl://{tmp_path}/e.jsonl, 'mqtt://127.0.0.1:{broker.port}/site/door']\n"
            "tracker: bytetrack\n"
            "analytics:\n  lines:\n    - {name: door, points: [[320, 480], [320, 0]], classes: [face]}\n"
            f"mqtt: {{username: edge, password_file: mqtt-password, queue_dir: {tmp_path}/queue}}\n"
        )
        try:
            assert main(["run", str(cfg)]) == 0
            lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
            with_events = [e["frame_id"] for e in lines if e["events"]]
            got = sub.wait_for_ids(set(with_events))
        finally:
            sub.close()
    finally:
        broker.stop()
    out = capsys.readouterr().out
    assert "line door: in 1  out 1" in out
    assert len(with_events) == 2, "one frame per crossing"
    assert sorted(set(got)) == sorted(with_events), "only frames with events are published"
    assert "door-secret" not in out


def test_line_counts_on_metrics_and_status_while_running(bundle: Path, slow_clip: Path, tmp_path: Path) -> None:
    import socket
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for _attempt in range(3):  # a free port can be taken by another process before the run binds it
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"model: {{bundle: {bundle}, threads: 1}}\nsource: file://{slow_clip}?loop=1\nsinks: [jsonl://-]\n"
            f"http: {{listen: 127.0.0.1:{port}, auth: none}}\n"
            "analytics: {lines: [{name: door, points: [[320, 480], [320, 0]]}]}\n"
        )
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", str(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first:
            break
        _, err = proc.communicate(timeout=60)
        assert "listen" in err or "in use" in err, err
    try:
        crossed = 0
        line = first
        while crossed < 2:  # the clip's two faces cross the door once each per loop
            crossed += sum(e["type"] == "line_crossed" for e in json.loads(line)["events"])
            line = proc.stdout.readline()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for _ in range(60):  # /v1/status shows the pipeline's stats snapshot, refreshed every 0.25 s: a few frames on
            status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10).read())
            door = (status["pipeline"].get("events") or {}).get("lines", {}).get("door", {})
            if door.get("in") and door.get("out"):
                break
            proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    counts = {
        d: float(m.group(1))
        for d in ("in", "out")
        if (m := re.search(rf'^edge_line_crossings_total{{direction="{d}",line="door"}} (\S+)$', metrics, re.M))
    }
    assert counts.get("in", 0) >= 1 and counts.get("out", 0) >= 1, metrics
    assert re.search(r"^edge_tracks \d", metrics, re.M), metrics
    assert door["in"] >= 1 and door["out"] >= 1 and status["pipeline"]["events"]["tracker"] == "bytetrack", status
