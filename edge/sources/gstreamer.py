"""GStreamer sources: a ``gst-launch-1.0`` subprocess writing raw BGR frames to a pipe, or OpenCV's own
GStreamer backend when the installed OpenCV has one (JetPack's does; pip's wheels do not).

The subprocess runs ``PIPELINE ! videoconvert ! video/x-raw,format=BGR ! fdsink fd=N`` with ``-v`` so
that it prints the negotiated caps (width, height) on stdout; frames are read from the pipe, each
``height`` rows of ``round_up_4(width * 3)`` bytes (GStreamer's row stride for packed BGR). It also
runs with ``-e``: stopping sends SIGINT, which gst-launch handles by sending EOS down the pipeline and
taking it to NULL (so nvarguscamerasrc releases its Argus session); SIGTERM, which gst-launch does not
handle, and SIGKILL come only when it has not exited after ``stop_timeout`` seconds.

Pipeline descriptions quote property values the way ``gst_parse_launch`` reads them (double quotes,
:func:`gst_quote`): OpenCV's GStreamer backend hands the description to ``gst_parse_launch`` as is,
which would keep shell-style single quotes inside the value; for gst-launch the description is split
into arguments with :func:`shlex.split`, which takes the same double quotes off.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from edge.errors import SourceError
from edge.sources.uri import redact

log = logging.getLogger("edge.sources")

GST_LAUNCH = "gst-launch-1.0"
_CAPS = re.compile(r"GstFdSink:edgesink\.GstPad:sink: caps = video/x-raw, (.*)$")
_FIELD = re.compile(r"(width|height)=\(int\)(\d+)")
PLAYING_GRACE = 2.0  # seconds open() waits, after the caps, for gst-launch's event loop ("New clock")
ARGUS_STUCK = re.compile(
    r"Failed to create CaptureSession|\(Argus\) Error|Failed to create CameraProvider|"
    r"No cameras available|nvargus.*(timeout|Timeout)|Could not connect to nvargus",
)
ARGUS_FIX = (
    "the Argus camera daemon did not give a capture session (a previous session may be stuck); "
    "restart it with `sudo systemctl restart nvargus-daemon` and order services After=nvargus-daemon.service"
)


@functools.lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def gst_launch_path() -> str | None:
    return shutil.which(GST_LAUNCH)


@functools.lru_cache(maxsize=64)
def has_element(name: str) -> bool:
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return False
    try:
        return subprocess.run([inspect, "--exists", name], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file() or has_element("nvv4l2decoder")


_ELEMENT_ERROR = re.compile(r"^ERROR: from element (\S+): (.*)$")
_OTHER_ERROR = re.compile(r"^(?:ERROR|WARNING: erroneous pipeline): (.*)$")


def explain_gst_error(text: str) -> str | None:
    """A one-line explanation of gst-launch's error output (with the Argus fix when it applies)."""
    if ARGUS_STUCK.search(text):
        return ARGUS_FIX
    for line in text.splitlines():
        m = _ELEMENT_ERROR.match(line.strip())
        if m:
            element = m.group(1).rsplit("/", 1)[-1].split(":")[-1]
            return f"{element}: {m.group(2)}"
        m = _OTHER_ERROR.match(line.strip())
        if m:
            return m.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def gst_quote(value: str) -> str:
    """``value`` as one ``gst_parse_launch`` property value: in double quotes, ``"`` and ``\\`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bgr_tail(width: int | None = None, height: int | None = None, fps: float | None = None) -> str:
    """The conversion every source pipeline ends with, before the sink."""
    caps = "video/x-raw,format=BGR"
    scale = ""
    if width and height:
        caps += f",width={width},height={height}"
        scale = "videoscale ! "
    rate = ""
    if fps:
        rate = f"videorate drop-only=true ! video/x-raw,framerate={round(fps)}/1 ! "
    return f"{rate}videoconvert ! {scale}{caps}"


class GstLaunchReader:
    """Frames from a ``gst-launch-1.0`` subprocess through a pipe (works with any OpenCV build)."""

    description = "gst-launch-1.0 subprocess (raw BGR frames over a pipe)"

    def __init__(
        self,
        pipeline: str,
        open_timeout: float = 10.0,
        read_timeout: float | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        self.pipeline = pipeline
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout  # None: wait for frames forever (files); seconds: stall = disconnect
        self.stop_timeout = stop_timeout  # after SIGINT (EOS), before SIGTERM
        self.returncode: int | None = None  # gst-launch's exit status once closed
        self.stopped_by = ""  # "eos" (SIGINT and -e did it), "sigint" (killed by it), "terminate", "kill", "exited"
        self._stdout: collections.deque[str] = collections.deque(maxlen=200)
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._shape: tuple[int, int] | None = None
        self._caps = threading.Event()
        self._playing = threading.Event()  # gst-launch's event loop runs: its SIGINT handler is in place
        self._stderr: collections.deque[str] = collections.deque(maxlen=60)
        self._lock = threading.Lock()
        self._stderr_thread: threading.Thread | None = None
        self._stdout_thread: threading.Thread | None = None

    def command(self, fd: int) -> list[str]:
        exe = gst_launch_path() or GST_LAUNCH
        desc = f"{self.pipeline} ! fdsink name=edgesink fd={fd} sync=false"
        return [exe, "-e", "-v", *shlex.split(desc)]

    def open(self) -> None:
        if gst_launch_path() is None:
            raise SourceError(
                f"{GST_LAUNCH} not found; install gstreamer1.0-tools (apt) or use an OpenCV with GStreamer"
            )
        r, w = os.pipe()
        try:
            cmd = self.command(w)
            log.debug("gst: %s", redact(shlex.join(cmd)))
            self._proc = subprocess.Popen(
                cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            os.close(r)
            raise SourceError(f"cannot start {GST_LAUNCH}: {exc}") from None
        finally:
            os.close(w)
        self._fd = r
        self._stdout_thread = threading.Thread(target=self._watch_stdout, daemon=True, name="gst-stdout")
        self._stderr_thread = threading.Thread(target=self._watch_stderr, daemon=True, name="gst-stderr")
        self._stdout_thread.start()
        self._stderr_thread.start()
        deadline = time.monotonic() + self.open_timeout
        while not self._caps.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                reason = self._failure(f"no video after {self.open_timeout:.0f} s")
                self.close()
                raise SourceError(reason)
        # gst-launch installs its SIGINT handler only while its event loop runs; a SIGINT in the gap after
        # preroll would kill it before the pipeline reaches NULL. "New clock" is printed from that loop.
        self._playing.wait(min(PLAYING_GRACE, max(0.0, deadline - time.monotonic())))

    def _failure(self, default: str) -> str:
        proc = self._proc
        if proc is not None and proc.poll() is not None and self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)  # the process exited: its stderr ends soon
        text = "\n".join(self._stderr)
        return redact(explain_gst_error(text) or default)

    def _watch_stdout(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if "GstFdSink:edgesink" not in line:
                    self._stdout.append(line)
                if line.startswith("New clock:"):
                    self._playing.set()
                m = _CAPS.search(line)
                if m:
                    fields = dict(_FIELD.findall(m.group(1)))
                    if "width" in fields and "height" in fields:
                        self._shape = (int(fields["height"]), int(fields["width"]))
                        self._caps.set()
        except (OSError, ValueError):  # closed under us by close()
            return

    def _watch_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._stderr.append(line)
                log.debug("gst: %s", redact(line))
        except (OSError, ValueError):  # closed under us by close()
            return

    def _read_exact(self, buf: memoryview) -> bool:
        got = 0
        while got < len(buf):
            if self.read_timeout is not None:
                ready, _, _ = select.select([self._fd], [], [], self.read_timeout)
                if not ready:
                    log.warning("gst: no frame for %.1f s, treating the source as disconnected", self.read_timeout)
                    return False
            try:
                n = os.readv(self._fd, [buf[got:]])
            except OSError:
                return False
            if n == 0:
                return False
            got += n
        return True

    def read(self) -> np.ndarray | None:
        if self._fd < 0 or self._shape is None:
            return None
        h, w = self._shape
        stride = (w * 3 + 3) & ~3
        data = np.empty((h, stride), np.uint8)
        if not self._read_exact(memoryview(data.reshape(-1).data).cast("B")):
            reason = self._failure("")
            if reason:
                log.info("gst: stream ended: %s", reason)
            return None
        return data[:, : w * 3].reshape(h, w, 3)

    @property
    def output(self) -> list[str]:
        """gst-launch's own messages on stdout (caps lines of the sink left out), newest last."""
        return list(self._stdout)

    def interrupt(self) -> None:
        """Ask gst-launch to stop: SIGINT, which with ``-e`` sends EOS and takes the pipeline to NULL."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
            except OSError:  # pragma: no cover
                pass

    def _stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGINT (EOS), draining the pipe so fdsink never blocks the EOS; then SIGTERM; then SIGKILL."""
        if proc.poll() is not None:
            self.stopped_by = self.stopped_by or "exited"
            return
        try:
            proc.send_signal(signal.SIGINT)
        except OSError:  # pragma: no cover
            pass
        deadline = time.monotonic() + self.stop_timeout
        reading = self._fd >= 0
        while proc.poll() is None and time.monotonic() < deadline:
            if reading:
                ready, _, _ = select.select([self._fd], [], [], 0.05)
                if ready:
                    try:
                        reading = bool(os.read(self._fd, 1 << 20))
                    except OSError:
                        reading = False
            else:
                try:
                    proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
        if proc.poll() is not None:
            # -SIGINT: gst-launch had no handler yet (start-up) and died without taking the pipeline to NULL.
            self.stopped_by = "sigint" if proc.returncode == -signal.SIGINT else "eos"
            return
        log.warning("gst: gst-launch did not stop %.0f s after SIGINT (EOS); terminating it", self.stop_timeout)
        proc.terminate()
        try:
            proc.wait(timeout=3)
            self.stopped_by = "terminate"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.stopped_by = "kill"

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                self._stop_process(proc)
                self.returncode = proc.returncode
                for thread in (self._stdout_thread, self._stderr_thread):
                    if thread is not None and thread is not threading.current_thread():
                        thread.join(timeout=2)  # the process is gone: both streams end
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class OpenCVReader:
    """Frames through ``cv2.VideoCapture`` with a given backend (GStreamer, FFmpeg, V4L2)."""

    def __init__(self, target: str | int, api: int, description: str, props: dict[int, float] | None = None) -> None:
        self.target = target
        self.api = api
        self.description = description
        self.props = props or {}
        self._cap: object | None = None

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.target, self.api)
        for prop, value in self.props.items():
            cap.set(prop, value)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV ({self.description}) cannot open {redact(str(self.target))}")
        self._cap = cap

    def read(self) -> np.ndarray | None:
        import cv2

        cap = self._cap
        if not isinstance(cap, cv2.VideoCapture):
            return None
        ok, image = cap.read()
        if not ok or image is None:
            return None
        from edge.preprocess import to_bgr

        return to_bgr(image, str(self.target))

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()  # type: ignore[attr-defined]
