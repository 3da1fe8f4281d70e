"""``edge build MODEL.onnx -o OUT.bundle --target T ...``: ONNX model -> bundle (see docs/build.md).

The builder (``builders``, onnx, onnxruntime, TensorRT) is imported inside :func:`run` only, so the
runtime's other commands never load it. ``scripts/build_engine.py`` reuses :func:`add_arguments` and
:func:`run` with ``--target auto`` for building on a Jetson.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.errors import BuildError, ConfigError
from edge.manifest import PRECISIONS
from edge.spec import COLORS, DECODERS, LAYOUTS, PAD_ALIGNS, PRESETS, RESIZE_MODES, TASKS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build a bundle (ONNX + TensorRT/TensorRT-RTX plans + manifest) from an ONNX model",
        description="Build a bundle from an ONNX model: precision transform, calibration, accuracy gate, "
        "one plan per target family, manifest. Details: docs/build.md.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser, prog: str = "edge build") -> None:
    """Add the build flags to ``parser``; ``prog`` starts the command line recorded in the manifest."""
    actions: list[argparse.Action] = []

    group: Any = parser  # the argument group being filled

    def a(*names: str, **kwargs: Any) -> None:
        actions.append(parser.add_argument(*names, **kwargs))

    def g_add(*names: str, **kwargs: Any) -> None:
        actions.append(group.add_argument(*names, **kwargs))

    a("model", type=Path, metavar="MODEL.onnx", help="the ONNX model to build")
    a("-o", "--output", type=Path, required=True, metavar="OUT.bundle", help="bundle directory to write")
    a(
        "--target",
        action="append",
        metavar="T",
        help="target id, repeatable or comma-separated; `auto` = this machine (default)",
    )
    a(
        "--precision",
        choices=PRECISIONS,
        help="default: fp16 for GPU targets, fp32 when a cpu target is included; int8-dynamic: ONNX Runtime only",
    )
    group = parser.add_argument_group("shapes (trtexec spelling: NAME:1x3x640x640[,NAME2:...])")
    g_add("--shapes", metavar="SHAPES", help="fix inputs at these shapes (the model becomes static there)")
    g_add("--min-shapes", metavar="SHAPES", help="smallest shapes of a dynamic profile")
    g_add("--opt-shapes", metavar="SHAPES", help="shapes the engine is tuned for")
    g_add("--max-shapes", metavar="SHAPES", help="largest shapes of a dynamic profile")
    group = parser.add_argument_group("calibration and accuracy")
    g_add("--calib", type=Path, metavar="DIR|FILE.npy", help="images (or preprocessed tensors) for int8/fp8")
    g_add("--calib-method", choices=("entropy", "minmax", "percentile"), default="entropy")
    g_add("--calib-limit", type=int, metavar="N", help="use at most N calibration images")
    g_add("--val", type=Path, metavar="DIR", help="images for the accuracy check (default: the --calib images)")
    g_add("--max-drop", type=float, metavar="X", help="fail when agreement with FP32 drops by more than X (0.01 = 1%%)")
    group = parser.add_argument_group("engines")
    g_add("--dla", type=int, metavar="N", help="Jetson Orin, TensorRT 10.x: run on DLA core N (GPU fallback)")
    g_add("--timing-cache", type=Path, metavar="FILE", help="classic TensorRT: reuse and update this timing cache")
    g_add("--workspace", type=int, metavar="MiB", help="builder workspace limit (default: the target's)")
    g_add("--opt-level", type=int, metavar="0-5", help="builder optimization level (TensorRT default 3)")
    g_add("--hardware-compatibility", choices=("ampere+", "same-cc"), help="classic x86 TensorRT: portable plan")
    g_add("--version-compatible", action="store_true", help="classic TensorRT: plan loads on later TensorRT")
    g_add(
        "--skip-unavailable",
        action="store_true",
        help="targets whose TensorRT is not on this machine get no plan (they run the ONNX) instead of an error",
    )
    g_add("--no-simplify", action="store_true", help="leave the graph as exported (no tidy pass, no onnxslim)")
    g_add("--simplify", action="store_true", help="run onnxslim for fp32 builds too (always run for other precisions)")
    g_add("--fp16-io", action="store_true", help="with --precision fp16: float16 inputs and outputs (default float32)")
    group = parser.add_argument_group("preprocess (recorded in the manifest, used by calibration and the runtime)")
    g_add(
        "--preset",
        choices=tuple(PRESETS),
        help="a model zoo's pixel convention: colour, scale, mean, std, resize (flags given beside it win): "
        "torchvision (RGB, /255, ImageNet mean/std, center-crop), tf (RGB, x/127.5-1, center-crop), "
        "yolo (RGB, /255, letterbox pad 114), caffe (BGR, 0..255 minus BGR means, stretch)",
    )
    g_add("--color", choices=COLORS)
    g_add("--scale", type=float, metavar="S", help="pixel multiplier before mean/std (default 1/255)")
    g_add("--mean", metavar="a,b,c", help="per-channel mean subtracted after scaling")
    g_add("--std", metavar="a,b,c", help="per-channel divisor after the mean")
    g_add("--resize", choices=RESIZE_MODES, help="default letterbox")
    g_add(
        "--crop-fraction",
        type=float,
        metavar="F",
        help="center-crop: resize the shorter side to size/F, then cut the centre (default 0.875; timm crop_pct)",
    )
    g_add("--pad-align", choices=PAD_ALIGNS, help="letterbox: where the image sits (default center)")
    g_add("--pad-value", type=int, metavar="V", help="letterbox padding pixel value 0..255 (default 114)")
    g_add("--layout", choices=LAYOUTS)
    g_add("--size", metavar="HxW", help="network input size (default: the model's)")
    group = parser.add_argument_group("postprocess")
    g_add("--task", choices=TASKS, default="raw")
    g_add("--decoder", choices=DECODERS)
    g_add("--labels", type=Path, metavar="FILE", help="one label per line")
    g_add("--score-threshold", type=float, metavar="X")
    g_add("--iou-threshold", type=float, metavar="X")
    g_add("--max-detections", type=int, metavar="N", help="detectors: keep at most N boxes per image (default 300)")
    g_add("--top-k", type=int, metavar="N", help="classifiers: report the N best classes (default 5)")
    g_add("--agnostic-nms", action="store_true", help="detectors: NMS across classes (one box per object)")
    group = parser.add_argument_group("bundle")
    g_add("--name", help="model name in the manifest (default: the ONNX file name)")
    g_add("--force", action="store_true", help="replace an existing bundle at -o")
    parser.set_defaults(build_actions=actions, build_prog=prog)


def _floats(text: str | None, flag: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: expected one or three numbers separated by commas (a,b,c), got {text!r}") from None
    if len(values) not in (1, 3):
        raise ConfigError(f"{flag}: expected one or three numbers (a,b,c), got {len(values)}")
    values = values * 3 if len(values) == 1 else values
    return (values[0], values[1], values[2])


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--size: expected HxW such as 640x640, got {text!r}")
    return (int(parts[0]), int(parts[1]))


def _targets(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return ("auto",)
    out = tuple(t.strip() for v in values for t in v.split(",") if t.strip())
    if not out:
        raise ConfigError("--target: empty; give a target id or `auto`")
    return out


def command_line(args: argparse.Namespace) -> str:
    """The build command in canonical form (every flag that differs from its default), for the manifest."""
    words = shlex.split(getattr(args, "build_prog", "edge build"))
    for action in getattr(args, "build_actions", []):
        value = getattr(args, action.dest)
        if not action.option_strings:
            words.append(str(value))
        elif value is None or value is False or value == action.default:
            continue
        elif value is True:
            words.append(action.option_strings[-1])
        else:
            for item in value if isinstance(value, list) else [value]:
                words += [action.option_strings[-1], str(item)]
    return shlex.join(words)


def preprocess_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The pixel-convention flags after ``--preset``: a flag given explicitly wins over the preset's value."""
    from edge.spec import preset

    given = {
        "color": args.color,
        "scale": args.scale,
        "mean": _floats(args.mean, "--mean"),
        "std": _floats(args.std, "--std"),
        "resize": args.resize,
        "pad_align": args.pad_align,
        "pad_value": args.pad_value,
    }
    base = preset(args.preset) if args.preset else {}
    return {k: v if v is not None else base.get(k) for k, v in given.items()}


def options_from_args(args: argparse.Namespace) -> Any:
    """A validated :class:`builders.options.BuildOptions` from parsed arguments."""
    from builders.options import BuildOptions
    from builders.shapes import parse_shapes

    def shapes(text: str | None, flag: str) -> dict[str, tuple[int, ...]]:
        return parse_shapes(text, flag) if text is not None else {}

    command = command_line(args)
    pre = preprocess_fields(args)
    return BuildOptions(
        model=args.model,
        output=args.output,
        targets=_targets(args.target),
        precision=args.precision,
        shapes=shapes(args.shapes, "--shapes"),
        min_shapes=shapes(args.min_shapes, "--min-shapes"),
        opt_shapes=shapes(args.opt_shapes, "--opt-shapes"),
        max_shapes=shapes(args.max_shapes, "--max-shapes"),
        calib=args.calib,
        calib_method=args.calib_method,
        calib_limit=args.calib_limit,
        val=args.val,
        max_drop=args.max_drop,
        dla=args.dla,
        timing_cache=args.timing_cache,
        workspace_mib=args.workspace,
        optimization_level=args.opt_level,
        hardware_compatibility=args.hardware_compatibility,
        version_compatible=args.version_compatible,
        skip_unavailable=args.skip_unavailable,
        simplify=_simplify_flag(args),
        fp16_io=args.fp16_io,
        color=pre["color"],
        scale=pre["scale"],
        mean=pre["mean"],
        std=pre["std"],
        resize=pre["resize"],
        layout=args.layout,
        size=_size(args.size),
        crop_fraction=args.crop_fraction,
        pad_align=pre["pad_align"],
        pad_value=pre["pad_value"],
        task=args.task,
        decoder=args.decoder,
        labels=args.labels,
        score_threshold=args.score_threshold,
        iou_threshold=args.iou_threshold,
        max_detections=args.max_detections,
        top_k=args.top_k,
        agnostic_nms=args.agnostic_nms,
        name=args.name,
        force=args.force,
        command=command,
    )


def _sigterm_as_interrupt() -> Any:
    """``kill PID`` (SIGTERM) unwinds like Ctrl-C, so the temp bundle is removed; the previous handler."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a library)
        return None


def _size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _simplify_flag(args: argparse.Namespace) -> bool | None:
    if args.simplify and args.no_simplify:
        raise ConfigError("--simplify and --no-simplify: give one of them")
    return False if args.no_simplify else (True if args.simplify else None)


def _accuracy_text(acc: dict[str, Any]) -> str:
    """``box_recall 1.0000 [95% 0.9621..1.0000] vs FP32 on 6 held-out samples, drop 0.00% (gate 1.00%: passed)``."""
    try:
        held = "held out from" in str((acc.get("validation") or {}).get("source", ""))
        samples = f"{acc['samples']}{' held-out' if held else ''} sample{'' if acc['samples'] == 1 else 's'}"
        score = f"{acc['metric']} {float(acc['score']):.4f}"
        if acc.get("confidence"):
            score += f" [95% {float(acc['confidence']['low']):.4f}..{float(acc['confidence']['high']):.4f}]"
        text = f"{score} vs FP32 on {samples}, drop {float(acc['drop']):.2%}"
    except (KeyError, TypeError, ValueError):
        return "recorded in manifest.json"
    if acc.get("max_drop") is not None:
        text += f" (gate {float(acc['max_drop']):.2%}: {'passed' if acc.get('passed') else 'failed'})"
    return text


def summarize(bundle: Path, seconds: float) -> str:
    """A few lines about a finished bundle: precision, artifacts, accuracy, skipped targets, time."""
    from edge.manifest import read_manifest

    m = read_manifest(bundle)
    lines = [f"  model      {m.name} ({m.precision}), built in {seconds:.1f} s"]
    for art in m.artifacts:
        where = ", ".join(art.targets)
        extra = f" sm {'/'.join(art.compute_capabilities)}" if art.compute_capabilities else ""
        extra += f" DLA {art.dla_core}" if art.dla_core is not None else ""
        lines.append(f"  artifact   {art.file:<40} {art.backend:<12} {where}{extra}  {_size_text(art.size)}")
    if m.accuracy:
        lines.append(f"  accuracy   {_accuracy_text(m.accuracy)}")
    for target, why in (m.builder.get("skipped") or {}).items():
        lines.append(f"  skipped    {target}: {why}")
    return "\n".join(lines)


KIT_PACKAGES = ("edge", "builders", "platforms")
PIP_NAMES = {"cv2": "opencv-python-headless", "yaml": "pyyaml"}
# What a Jetson's python3 needs beside JetPack's TensorRT and OpenCV; numpy stays 1.x there because JetPack's
# OpenCV is built against numpy 1.x and fails to import under numpy 2.
BUILD_DEPENDENCIES = "onnx onnxruntime onnxslim 'numpy<2' pyyaml"


def missing_dependency(exc: ModuleNotFoundError) -> BuildError | None:
    """A one-line error for a builder dependency that is not installed (not for the kit's own modules)."""
    top = (exc.name or "").split(".")[0]
    if not top or top in KIT_PACKAGES:
        return None
    return BuildError(
        f"the builder needs the Python package {PIP_NAMES.get(top, top)}, which is not installed here: "
        f"pip install 'edge-kit[build]' (on a Jetson, whose python3 has TensorRT and OpenCV: pip3 install "
        f"{BUILD_DEPENDENCIES})"
    )


def run(args: argparse.Namespace) -> int:
    previous = _sigterm_as_interrupt()
    try:
        from builders import build

        options = options_from_args(args)
        t0 = time.perf_counter()
        bundle = build(options)
    except ModuleNotFoundError as exc:
        error = missing_dependency(exc)
        if error is None:
            raise
        raise error from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"bundle: {bundle}")
    print(summarize(bundle, time.perf_counter() - t0))
    return 0


def standalone(argv: Sequence[str], prog: str = "build_engine.py", epilog: str | None = None) -> int:
    """``scripts/build_engine.py``: the same flags and :func:`run` under the script's own name; errors go
    through the CLI's one mapping (:func:`edge.cli.run_command`). ``epilog`` ends ``--help`` (the script's
    own options)."""
    import logging

    from edge.cli import ArgumentParser, run_command

    parser = ArgumentParser(  # one-line errors with a did-you-mean, as `edge build`
        prog=prog,
        description="Build a bundle on this machine (default --target auto). Details: docs/build.md.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    add_arguments(parser, prog=prog)
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.unrecognized(None, extras)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_command(run, args)
