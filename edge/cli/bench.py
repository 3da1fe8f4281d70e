"""``edge bench BUNDLE [--backend B] [--batch N] [--iterations N] [--duration S] [--warmup N] [--json] ...``.

Times the backend (at least ``--iterations`` calls and ``--duration`` seconds, as trtexec does) on example
inputs of the bundle's optimization-profile shape and prints trtexec's metric
names (Throughput qps; Latency min/mean/median/percentiles; H2D, GPU compute and D2H where measured).
Progress goes to stderr; ``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(subparsers: Any) -> None:
    from edge.cli.infer import BACKEND_CHOICES  # not edge.runtime's: that import is heavy (see there)

    p = subparsers.add_parser(
        "bench",
        help="measure a bundle's latency and throughput",
        description="Measure latency and throughput of a bundle on this machine (trtexec's metric names).",
    )
    p.add_argument("bundle", help="bundle directory (from `edge build`)")
    p.add_argument("--backend", choices=("auto", *BACKEND_CHOICES), default="auto", help="pin a backend")
    p.add_argument(
        "--gpu",
        metavar="INDEX|UUID",
        help="which GPU on a machine with several: nvidia-smi's index or UUID, as `edge info` lists them (default 0)",
    )
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--iterations", type=int, default=10, help="at least N timed calls (default 10, as trtexec)")
    p.add_argument(
        "--duration", type=float, default=3.0, help="and at least S seconds of timed calls (default 3, as trtexec)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (0: its default)")
    p.add_argument(
        "--cuda-graph",
        choices=("none", "whole"),
        default="none",
        help="TensorRT-RTX CUDA graph strategy (whole: capture the whole graph); other backends ignore it",
    )
    p.add_argument(
        "--power",
        metavar="MODE",
        help="desktop GPUs (NVML): also run in this power mode (eco, balanced, 180W; comma list) and report "
        "fps, W and fps/W beside max (edge.power.bench)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


class Progress:
    """A status line on stderr, redrawn at most every 0.5 s (and at the end of each phase)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        phase = "warm-up" if done < 0 else "timing"
        n = abs(done)
        if n != total and now - self.last < 0.5:
            return
        self.last = now
        end = "\r" if self.tty and n != total else "\n"
        print(f"{phase}: {n}/{total}", end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from edge.errors import ConfigError
    from edge.runtime import load
    from edge.runtime.perf import benchmark, format_report

    if args.batch < 1 or args.iterations < 1 or args.warmup < 0 or args.duration < 0:
        raise ConfigError("--batch and --iterations must be >= 1, --warmup and --duration >= 0")
    backend = None if args.backend == "auto" else args.backend
    with load(
        args.bundle, backend, warmup=0, intra_op_threads=args.threads, cuda_graph=args.cuda_graph, gpu=args.gpu
    ) as model:
        print(f"benchmarking {model.manifest.name}: {model.artifact.file} on {model.backend_name}", file=sys.stderr)

        def measure() -> dict[str, Any]:
            return benchmark(
                model,
                batch=args.batch,
                iterations=args.iterations,
                warmup=args.warmup,
                duration=args.duration,
                progress=Progress(),
            )

        if args.power:  # edge.power.bench: one benchmark per power mode, energy measured through NVML
            from edge.power.bench import compare_power, format_comparison

            gpus = [str(args.gpu)] if args.gpu is not None else None
            report = compare_power(args.power, measure, gpus=gpus, say=lambda line: print(line, file=sys.stderr))
            if "skipped" in report:  # no NVML here: the plain benchmark, and why there is no comparison
                print(f"power: {report['skipped']}", file=sys.stderr)
                result = measure()
                print(json.dumps({**result, "power": report}, indent=2) if args.json else format_report(result))
                return 0
            print(json.dumps(report, indent=2) if args.json else format_comparison(report))
            return 0
        result = measure()
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
