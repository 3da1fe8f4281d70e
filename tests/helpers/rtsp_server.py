"""A real RTSP server on loopback for source tests: GStreamer's RTSP server (gst-rtsp-server).

The server runs under Debian's ``/usr/bin/python3`` (which has ``gi`` and GstRtspServer; the venv
does not) as a subprocess, so tests can stop and restart it mid-run:

    with RtspServer() as server:          # H.264, 320x240 @ 30 fps, videotestsrc
        uri = server.url                  # rtsp://127.0.0.1:PORT/test
        server.stop(); server.start()     # same port, a new server process

Run directly: ``/usr/bin/python3 tests/helpers/rtsp_server.py PORT [PATH]``; it prints READY once serving.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bframes=0 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def available() -> str | None:
    """None when a real RTSP server can run here, else why not."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode != 0:
        return "GstRtspServer not importable by /usr/bin/python3 (apt install python3-gi gir1.2-gst-rtsp-server-1.0)"
    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 not found"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    def __init__(self, port: int | None = None, path: str = "/test") -> None:
        self.port = port or free_port()
        self.path = path
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 20.0) -> RtspServer:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, __file__, str(self.port), self.path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the server prints READY (or dies)
        if line.strip() != "READY":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"RTSP server did not start on port {self.port}: {line!r} {err[-500:]}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:  # runs under /usr/bin/python3
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    port = int(argv[1])
    path = argv[2] if len(argv) > 2 else "/test"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 2
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
