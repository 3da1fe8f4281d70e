"""Command-line mistakes: one ``error:`` line with a did-you-mean, exit 2, never argparse's usage dump."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import did_you_mean, main

# (argv, the one line expected on stderr)
MISTAKES = [
    (
        ["inferr", "b", "x.jpg"],
        "error: edge: argument COMMAND: invalid choice: 'inferr' (choose from ",
        "; did you mean infer or info? (see `edge --help`)",
    ),
    (["docter"], "error: edge: argument COMMAND: invalid choice: 'docter'", "; did you mean doctor?"),
    (["infer", "--jsn", "b", "x.jpg"], "error: edge infer: unknown flag --jsn", "; did you mean --json?"),
    (
        ["build", "m.onnx", "-o", "x.bundle", "--precison", "fp16"],
        "error: edge build: unknown flag --precison (and fp16)",
        "; did you mean --precision",
    ),
    (["--verbse", "info"], "error: edge info: unknown flag --verbse", "; did you mean --verbose"),
    (
        ["infer", "b", "x.jpg", "--backend", "tensorrtx"],
        "error: edge infer: argument --backend: invalid choice: 'tensorrtx'",
        "did you mean tensorrt or tensorrt-rtx? (see `edge infer --help`)",
    ),
    (
        ["bench", "b", "--batch", "four"],
        "error: edge bench: argument --batch: invalid int value: 'four'",
        "(see `edge bench --help`)",
    ),
    (["build", "m.onnx"], "error: edge build: the following arguments are required: -o/--output", "--help`)"),
    (["bench", "b", "extra"], "error: edge bench: unexpected argument extra", "(see `edge bench --help`)"),
]


@pytest.mark.parametrize(("argv", "start", "end"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_one_error_line_with_did_you_mean(
    argv: list[str], start: str, end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert info.value.code == 2 and captured.out == ""
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(start) and end in lines[0], lines[0]
    assert "usage:" not in captured.err


def test_no_suggestion_when_nothing_is_close() -> None:
    assert did_you_mean("--zzz", ["--json", "--save"]) == ""
    assert did_you_mean("infr", ["info", "infer", "build"]) == "; did you mean infer or info?"


def test_the_installed_command_too() -> None:
    """The real entry point (``python -m edge``) prints the same single line and exits 2."""
    out = subprocess.run([sys.executable, "-m", "edge", "bnech"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()] and "did you mean bench? (see `edge --help`)" in out.stderr


def test_build_engine_script_mistakes_are_one_line_too() -> None:
    """scripts/build_engine.py takes `edge build`'s flags under its own name, with the same one-line errors."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "build_engine.py"
    cmd = [sys.executable, str(script), "m.onnx", "-o", "x.bundle", "--precison", "fp16"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: build_engine.py: unknown flag --precison (and fp16); did you mean --precision or --preset? "
        "(see `build_engine.py --help`)"
    ]


def test_output_cut_short_by_a_pipe_is_not_a_traceback() -> None:
    """`edge info | head -1`: the reader is gone when edge writes; edge ends quietly with 141 (as a tool killed
    by SIGPIPE) instead of a BrokenPipeError traceback. The read end is closed before the interpreter has even
    started, so the write always meets a closed pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "edge", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err
