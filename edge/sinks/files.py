"""File sinks: JSON Lines events (``jsonl://PATH``, ``-`` for stdout) and annotated video (``file://out.mp4``)."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import IO

import cv2

from edge.errors import SourceError
from edge.observer import FrameResult
from edge.results import result_json
from edge.sinks.base import FpsMeter
from edge.sinks.overlay import annotate

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def unwritable(path: Path, example: str) -> str | None:
    """Why ``path`` cannot be created or written, or None; creates nothing (sinks create their files only
    when the first frame arrives, so a run that fails to start leaves nothing on disk)."""
    if path.is_dir():
        return f"{path} is a directory; give a file such as {example}"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"no permission to write in {ancestor}"
    if path.exists() and not os.access(path, os.W_OK):
        return f"no permission to write {path}"
    return None


def event_json(frame: FrameResult) -> dict[str, object]:
    """One frame's event: identity, timestamps, the result as ``edge infer --json`` prints it (with
    ``track_id`` on each detection when tracking), and ``events`` when analytics are configured."""
    event: dict[str, object] = {
        "frame_id": frame.frame_id,
        "source": frame.source,
        "capture_time": round(frame.capture_time, 6),
        "result_time": round(frame.result_time, 6),
        "latency_ms": round((frame.result_time - frame.capture_time) * 1000.0, 2),
    }
    event.update(result_json(frame.result))
    if frame.events is not None:
        event["events"] = frame.events
    return event


class JsonlSink:
    """One JSON object per processed frame, one per line, flushed as written (a crash loses no line).

    ``open`` checks that the file can be written; the file is created (or truncated) at the first frame."""

    needs_image = False

    def __init__(self, uri: str, path: str) -> None:
        self.uri = uri
        self.path = path
        self._file: IO[str] | None = None
        self._ready = False  # opened: the file is created at the first frame
        self.count = 0

    def open(self) -> None:
        if self.path == "-":
            self._file = sys.stdout
            return
        problem = unwritable(Path(self.path), "events.jsonl")
        if problem:
            raise SourceError(f"could not open sink {self.uri}: {problem}")
        self._ready = True

    def _create(self) -> IO[str]:
        p = Path(self.path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            return open(p, "w", encoding="utf-8")  # closed in close()
        except OSError as exc:
            raise SourceError(f"could not open sink {self.uri}: {exc.strerror or exc}") from None

    def write(self, frame: FrameResult) -> None:
        if self._file is None:
            if not self._ready:
                return
            self._file = self._create()
        try:
            self._file.write(json.dumps(event_json(frame), separators=(",", ":")) + "\n")
            self._file.flush()
        except BrokenPipeError:
            self._file = None
            raise SourceError("the reader of the output went away (broken pipe)") from None
        except OSError as exc:
            raise SourceError(f"cannot write {self.describe()}: {exc.strerror or exc}") from None
        self.count += 1

    def close(self) -> None:
        f, self._file = self._file, None
        self._ready = False
        if f is not None and f is not sys.stdout:
            f.close()
        elif f is not None:
            f.flush()

    def describe(self) -> str:
        return "stdout" if self.path == "-" else str(Path(self.path).resolve())


class VideoSink:
    """Annotated video (boxes, labels, fps); written beside the target and renamed into place on close."""

    needs_image = True

    def __init__(self, uri: str, path: str, fps: float = 30.0) -> None:
        self.uri = uri
        self.path = Path(path)
        self.fps = fps
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise SourceError(
                f"sink {uri}: unsupported video type {suffix or '(none)'}; use one of {', '.join(VIDEO_FOURCC)}"
            )
        self._fourcc = VIDEO_FOURCC[suffix]
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._meter = FpsMeter()
        self.count = 0

    def open(self) -> None:
        problem = unwritable(self.path, "out.mp4")
        if problem:
            raise SourceError(f"could not open sink {self.uri}: {problem}")
        # the folder is made at the first frame; OpenCV picks the container by suffix, so the temp name keeps it
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}-{secrets.token_hex(4)}{self.path.suffix}")

    def write(self, frame: FrameResult) -> None:
        if self._tmp is None or frame.image is None:
            return
        image = annotate(frame, self._meter.tick(frame.result_time))
        h, w = image.shape[:2]
        if self._writer is None:
            try:
                self._tmp.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"could not open sink {self.uri}: {exc.strerror or exc}") from None
            writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*self._fourcc), self.fps, (w, h))
            if not writer.isOpened():
                raise SourceError(f"could not open sink {self.uri}: OpenCV cannot write {self._fourcc} video")
            self._writer, self._size = writer, (w, h)
        elif self._size != (w, h):
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.count += 1

    def close(self) -> None:
        writer, self._writer = self._writer, None
        tmp, self._tmp = self._tmp, None
        if writer is not None:
            writer.release()
        if tmp is not None:
            if self.count:
                os.replace(tmp, self.path)
            else:
                tmp.unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.path.resolve())
