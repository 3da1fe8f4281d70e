"""The ``edge`` command line.

Each subcommand lives in its own module under ``edge.cli`` with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (``args -> int`` exit code). Modules import heavy libraries
inside ``func`` only, so ``edge --help`` stays fast and ``edge build`` alone loads the builder.
Every :class:`~edge.errors.EdgeError` becomes one ``error: ...`` line and its exit code; so does a command-line
mistake (exit 2), with a did-you-mean for a mistyped command, flag or choice instead of argparse's usage dump.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from edge import __version__
from edge.errors import EdgeError

COMMANDS = ("info", "build", "infer", "bench", "doctor", "run", "demo", "power", "service", "serve")


_CHOICE = re.compile(r"invalid choice: '?([^'(]*?)'? \(choose from (.*)\)")


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """``"; did you mean X?"`` (or ``X or Y``) for the candidates close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=2, cutoff=0.6)
    if not close and word.startswith("--"):  # a flag typed without its prefix part, e.g. --json-out for --json
        close = [c for c in candidates if c.startswith("--") and (c.startswith(word) or word.startswith(c))][:2]
    return f"; did you mean {' or '.join(close)}?" if close else ""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: PROG: what is wrong; did you mean ...? (see PROG --help)``."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        m = _CHOICE.search(message)
        if m:
            hint = did_you_mean(m.group(1), re.findall(r"[\w.+-]+", m.group(2)))
        self.exit(2, f"error: {self.prog}: {message}{hint} (see `{self.prog} --help`)\n")

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]

    def subcommand(self, name: str | None) -> ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                found = action.choices[name]
                return found if isinstance(found, ArgumentParser) else None
        return None

    def unrecognized(self, command: str | None, extras: Sequence[str]) -> NoReturn:
        """Arguments no parser took: name the first, suggest the flag of the (sub)command it was close to."""
        target = self.subcommand(command) or self
        first = extras[0]
        flags = target.option_strings() + [f for f in self.option_strings() if f not in target.option_strings()]
        hint = did_you_mean(first.split("=", 1)[0], flags) if first.startswith("-") else ""
        what = "unknown flag" if first.startswith("-") else "unexpected argument"
        rest = f" (and {' '.join(extras[1:])})" if len(extras) > 1 else ""
        self.exit(2, f"error: {target.prog}: {what} {first}{rest}{hint} (see `{target.prog} --help`)\n")


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
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
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.unrecognized(getattr(args, "command", None), extras)
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
    except BrokenPipeError:  # `edge info | head -3`: the reader left; end quietly as a SIGPIPE'd tool does
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141
    except ImportError as exc:
        from platforms.versions import import_problem

        line = import_problem(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
