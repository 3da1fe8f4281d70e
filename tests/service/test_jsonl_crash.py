"""The JSONL sink's promise, "a crash loses no line", tested the hard way: SIGKILL on a real process.

SIGKILL runs no handler, no ``finally`` and no buffer flush, so only what the sink already handed to the
kernel survives (the kernel keeps it in the page cache; a power cut is a different matter, see
docs/service.md). Two real processes:

- a writer that acknowledges every ``JsonlSink.write`` that returned, in a shared memory-mapped counter,
  killed while it writes as fast as it can: every acknowledged line must be in the file, whole;
- ``edge run`` with a ``jsonl://`` sink, killed mid-run: every line in the file is whole JSON, frames in order.

Either way at most the line whose ``write(2)`` the kill interrupted may be cut: a reader skips a last line
without its newline.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

WRITER = r"""
import mmap, struct, sys, time
import numpy as np
from edge.observer import FrameResult
from edge.results import Detections
from edge.sinks.files import JsonlSink

path, ack_path = sys.argv[1], sys.argv[2]
sink = JsonlSink("jsonl://" + path, path)
sink.open()
with open(ack_path, "r+b") as f:
    ack = mmap.mmap(f.fileno(), 8)
n = 40  # boxes per frame: lines of about 3 kB, so many cross a 4 kB page boundary
rng = np.random.default_rng(0)
boxes = (rng.random((n, 4)) * 500).astype(np.float32)
dets = Detections(boxes, rng.random(n).astype(np.float32), np.zeros(n, np.int64), ("face",))
i = 0
while True:
    t = time.time()
    sink.write(FrameResult(i, "test://", t, t, dets))
    i += 1
    struct.pack_into("<q", ack, 0, i)  # only after write() returned
"""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll an observable condition (not a guess at how long something takes) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """(complete lines, the cut tail after the last newline)."""
    *lines, tail = data.split(b"\n")
    return lines, tail


@pytest.mark.parametrize("target", [300, 3000])
def test_sigkill_loses_no_acknowledged_line(tmp_path: Path, target: int) -> None:
    events = tmp_path / "events.jsonl"
    ack_path = tmp_path / "ack"
    ack_path.write_bytes(b"\0" * 8)
    with open(ack_path, "r+b") as f:
        ack = mmap.mmap(f.fileno(), 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(events), str(ack_path)], env=env)
    try:
        wait_for(lambda: struct.unpack_from("<q", ack)[0] >= target or proc.poll() is not None, 120, "lines")
        assert proc.poll() is None, "the writer died on its own"
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the write loop
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acknowledged = struct.unpack_from("<q", ack)[0]
    lines, tail = split_lines(events.read_bytes())
    # Every write() that returned is in the file; at most the one that did not return yet is there too.
    assert acknowledged <= len(lines) <= acknowledged + 1
    assert acknowledged >= target
    for i, line in enumerate(lines):
        event = json.loads(line)
        assert event["frame_id"] == i and len(event["detections"]) == 40
    # A cut tail is only possible for a line whose write the kill interrupted (never acknowledged).
    assert tail == b"" or len(lines) == acknowledged


def test_sigkill_of_edge_run_leaves_whole_lines(tmp_path: Path, face_bundle: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "edge", "run", "--model", str(face_bundle), "--source", "test://"]
    proc = subprocess.Popen(
        [*argv, "--sink", f"jsonl://{events}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def lines_written() -> int:
            return events.read_bytes().count(b"\n") if events.exists() else 0

        wait_for(lambda: lines_written() >= 10 or proc.poll() is not None, 120, "10 lines from edge run")
        assert proc.poll() is None, "edge run ended on its own"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines, tail = split_lines(events.read_bytes())
    assert len(lines) >= 10
    frame_ids = [json.loads(line)["frame_id"] for line in lines]  # every line is whole JSON
    assert frame_ids == sorted(frame_ids) and len(set(frame_ids)) == len(frame_ids)
    assert tail == b"" or not tail.endswith(b"}")
