"""``edge run [CONFIG.yaml] [--model BUNDLE --source URI --sink URI ...]``: run a camera pipeline.

A config file (see :mod:`edge.config`) or flags; flags given with a config replace its values.
SIGINT / SIGTERM stop taking frames, finish the frames in flight and flush every sink; a summary
(frames, fps, dropped, per-stage milliseconds, latency) is printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("edge.run")
PROGRESS_EVERY = 30.0  # seconds between progress lines of `edge run`


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a camera pipeline (sources -> model -> sinks)",
        description="Run a bundle on video sources and write events, annotated video or a live preview.",
        epilog="Sources: csi://0, v4l2:///dev/video0, rtsp://..., file://clip.mp4, DIR, gst://PIPELINE, test://. "
        "Sinks: jsonl://events.jsonl (jsonl://- for stdout), file://out.mp4, mjpeg://0.0.0.0:8080, display://, "
        "mqtt://HOST:PORT/TOPIC.",
    )
    add_run_arguments(p)
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", type=Path, help="run config (YAML): model, source(s), sinks, pipeline, ...")
    p.add_argument("--model", metavar="BUNDLE", help="bundle directory (from `edge build`)")
    p.add_argument("--source", action="append", metavar="URI", help="video source URI (repeat for several)")
    p.add_argument("--sink", action="append", metavar="URI", help="sink URI (repeat for several)")
    p.add_argument("--backend", help="pin a backend (default: the best for this machine)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument(
        "--gpu",
        metavar="INDEX|UUID",
        help="which GPU on a machine with several: nvidia-smi's index or UUID, as `edge info` lists them (default 0)",
    )
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--duration", metavar="S", help="stop after a duration (30, 30s, 5m)")
    p.add_argument("--fps-cap", type=float, metavar="FPS", help="process at most FPS frames per second")
    p.add_argument("--stride", type=int, metavar="N", help="process every Nth frame of each source")
    p.add_argument("--batch", type=int, metavar="N", help="largest inference batch across sources")
    p.add_argument(
        "--tracker",
        choices=("bytetrack", "iou", "none"),
        help="give every detection a track_id (bytetrack: Kalman + two-stage matching; iou: the cheap one)",
    )
    p.add_argument(
        "--progress",
        type=float,
        default=PROGRESS_EVERY,
        metavar="S",
        help=f"log a progress line every S seconds while running (default {PROGRESS_EVERY:g}; 0: never)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The run config from a file and/or flags, validated by :mod:`edge.config` (flags win)."""
    from edge.config import RunConfig, read_config_file
    from edge.errors import ConfigError

    data: dict[str, Any] = {}
    base_dir = None
    where = f"{args.config}: " if args.config is not None else ""
    if args.config is not None:
        data = read_config_file(args.config)
        base_dir = args.config.resolve().parent
    if args.model:
        data["model"] = (
            args.model if not isinstance(data.get("model"), dict) else {**data["model"], "bundle": args.model}
        )
    if args.backend or args.threads is not None or getattr(args, "gpu", None) is not None:
        model = data.get("model")
        model = dict(model) if isinstance(model, dict) else {"bundle": model}
        if args.backend:
            model["backend"] = args.backend
        if getattr(args, "gpu", None) is not None:
            model["gpu"] = args.gpu
        if args.threads is not None:
            model["threads"] = args.threads
        data["model"] = model
    if args.source:
        data.pop("source", None)
        data["sources"] = list(args.source)
    if args.sink:
        data["sinks"] = list(args.sink)
    if getattr(args, "tracker", None):
        data["tracker"] = args.tracker
    pipe = data.get("pipeline") or {}
    for key, value in (
        ("max_frames", args.max_frames),
        ("duration", args.duration),
        ("fps_cap", args.fps_cap),
        ("stride", args.stride),
        ("batch", args.batch),
    ):
        if value is not None:
            if not isinstance(pipe, dict):
                raise ConfigError(f"{where}pipeline: expected a mapping, got {pipe!r}")
            pipe = {**pipe, key: value}
    if pipe:
        data["pipeline"] = pipe
    if "model" not in data:
        raise ConfigError("model: required; give a config file or --model BUNDLE")
    if "source" not in data and "sources" not in data:
        raise ConfigError("source: required; give a config file or --source URI")
    try:
        cfg = RunConfig.from_dict(data, base_dir=base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    cfg.path = args.config
    return cfg


def execute(
    cfg: Any,
    out: TextIO | None = None,
    *,
    observers: Sequence[Any] = (),
    progress_every: float | None = PROGRESS_EVERY,
    show_outputs: bool = True,
) -> Any:
    """Open everything the config names, run the pipeline, close everything; the final stats.

    ``observers`` join the pipeline's (their ``close()``, if any, is called at the end); a progress line is
    logged every ``progress_every`` seconds (None or 0: never); ``show_outputs=False`` leaves the sinks'
    paths out of the summary (for a caller that prints them its own way)."""
    from edge.pipeline import Pipeline, PipelineOptions
    from edge.pipeline.progress import Progress
    from edge.runtime import load
    from edge.sinks import open_sink
    from edge.sources import open_source

    sources = [open_source(uri) for uri in cfg.sources]
    sinks = [open_sink(uri, mqtt=getattr(cfg, "mqtt", None)) for uri in cfg.sinks]
    if not sinks:
        log.warning("no sinks: results are counted but not written (add --sink jsonl://events.jsonl)")
    m = cfg.model
    model = load(m.bundle, m.backend, warmup=m.warmup, intra_op_threads=m.threads, gpu=m.gpu)
    attached: list[Any] = []
    try:
        p = cfg.pipeline
        options = PipelineOptions(
            fps_cap=p.fps_cap,
            stride=p.stride,
            max_frames=p.max_frames,
            duration=p.duration,
            batch=p.batch,
            queue_size=p.queue_size,
        )
        events = None
        if getattr(cfg, "tracker", None) is not None or getattr(cfg, "analytics", None) is not None:
            from edge.events.stage import EventStage

            if cfg.analytics is not None:
                from edge.events.analytics import check_classes

                check_classes(cfg.analytics, model.manifest.postprocess.labels)
            events = EventStage(cfg.tracker, cfg.analytics)
            log.info("events: %s", events.describe())
        pipeline = Pipeline(model, sources, sinks, options, events=events)
        if cfg.power is not None and getattr(cfg.power, "enabled", True):
            from edge.power.policy import PowerPolicy

            attached.append(PowerPolicy(cfg.power, events=pipeline.event))
        from edge.service import attach

        owners: list[Any] = [events, *sinks]
        metrics = [o.register_metrics for o in owners if hasattr(o, "register_metrics")]
        attached.extend(attach(cfg, model, metrics=metrics))
        attached.extend(observers)
        if progress_every:
            attached.append(Progress(lambda line: log.info("progress: %s", line), every=progress_every))
        pipeline.observers.extend(attached)
        stats = pipeline.run()
        print_summary(pipeline, stats, sinks, out, show_outputs=show_outputs)
        return stats
    finally:
        for obs in reversed(attached):
            close = getattr(obs, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.warning("closing %s failed", type(obs).__name__, exc_info=True)
        model.close()


def print_summary(
    pipeline: Any, stats: Any, sinks: list[Any], out: TextIO | None = None, *, show_outputs: bool = True
) -> None:
    """frames, fps, dropped, per-stage ms, latency and where the outputs are."""
    if out is None:
        out = sys.stderr if any(getattr(s, "path", None) == "-" for s in sinks) else sys.stdout
    extra = stats.extra
    lines = [
        f"frames: {stats.frames}  fps: {stats.fps:.1f}  dropped: {stats.dropped}  skipped: {extra.get('skipped', 0)}  "
        f"reconnects: {stats.reconnects}  stopped: {pipeline.stop_reason or 'done'}",
        "stage ms (mean): " + "  ".join(f"{k} {v:.2f}" for k, v in stats.stage_ms.items()),
    ]
    if "latency_p50_ms" in extra:
        lines.append(
            f"latency capture->result: p50 {extra['latency_p50_ms']:.1f} ms  p99 {extra['latency_p99_ms']:.1f} ms"
        )
    lines += events_summary(extra.get("events"))
    for sink in sinks if show_outputs else ():
        lines.append(f"output: {sink.uri} -> {sink.describe()}")
    print("\n".join(lines), file=out, flush=True)


def events_summary(status: dict[str, Any] | None) -> list[str]:
    """``tracks: ...``, one line per line and zone with its counts (nothing without tracking)."""
    if not status:
        return []
    out = [f"tracks: {status.get('tracks', 0)} alive at the end ({status.get('tracker')})"]
    for name, c in (status.get("lines") or {}).items():
        out.append(f"line {name}: in {c['in']}  out {c['out']}")
    for name, c in (status.get("zones") or {}).items():
        out.append(f"zone {name}: entered {c['entered']}  left {c['left']}  inside now {c['occupancy']}")
    return out


def run(args: argparse.Namespace) -> int:
    from edge.errors import ConfigError

    progress = getattr(args, "progress", PROGRESS_EVERY)
    if progress < 0:
        raise ConfigError(f"--progress: must be 0 (never) or more seconds, got {progress:g}")
    cfg = config_from_args(args)
    execute(cfg, progress_every=progress)
    return 0
