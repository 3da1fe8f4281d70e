"""The ``edge`` command line.

Each subcommand lives in its own module under ``edge.cli`` with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (``args -> int`` exit code). Modules import heavy libraries
inside ``func`` only, so ``edge --help`` stays fast and ``edge build`` alone loads the builder.
Every :class:`~edge.errors.EdgeError` becomes one ``error: ...`` line and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence

from edge import __version__
from edge.errors import EdgeError

COMMANDS = ("info", "build", "infer", "bench", "doctor", "run", "demo", "power", "service", "serve")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Build TensorRT/TensorRT-RTX/ONNX bundles and run them on Jetson, RTX and CPU machines.",
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = f"edge.cli.{name}"
        if importlib.util.find_spec(module) is None:
            continue
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run one command: every :class:`EdgeError` becomes one ``error: ...`` line and its exit code, Ctrl-C
    exit 130, and a library that fails to import (OpenCV built against numpy 1.x under numpy 2, ...) one line
    with exit 1. ``edge`` and ``scripts/build_engine.py`` both go through here."""
    try:
        return int(func(args) or 0)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        from platforms.versions import import_problem

        line = import_problem(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
