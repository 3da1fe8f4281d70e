"""Type stubs for the TensorRT APIs, so mypy checks the builder's engine code on machines without them.

    python scripts/make_stubs.py .cache/stubs && MYPYPATH=.cache/stubs mypy builders edge

- classic TensorRT (``import tensorrt``): copied from the installed ``tensorrt-stubs`` package
  (``pip install --no-deps tensorrt-stubs``), whose ``tensorrt/`` and ``tensorrt_bindings/`` folders hold
  ``.pyi`` files but no ``py.typed`` marker (so mypy ignores them in site-packages). Some methods name a
  parameter ``in``, a syntax error: renamed ``in_``; a parameter without a default after one with a
  default (also a syntax error) gets ``= ...``; the import of the runtime-only ``tensorrt_libs`` is dropped;
  each file starts with ``# mypy: ignore-errors`` (mypy reports errors inside stubs on MYPYPATH).
- TensorRT-RTX (``import tensorrt_rtx``): ships no stubs; generated with mypy's ``stubgen`` from the
  installed module when it imports (its bindings are inspected at run time, no GPU needed).

Idempotent: files are rewritten only when their content changes. Prints one line per package.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# A parameter named ``in`` in a def line: "(self, in: list[...]" -> "(self, in_: list[...]".
_IN_PARAM = re.compile(r"([(,]\s*)in(\s*:)")


_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:.*)$")
_DROP = ("import tensorrt_libs as tensorrt_libs",)


def _split_params(params: str) -> list[str]:
    """Split a parameter list at top-level commas (brackets and strings aware enough for stubs)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(params):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    parts.append(params[start:])
    return [p for p in parts if p.strip()]


def _fix_defaults(line: str) -> str:
    """Give ``= ...`` to parameters without a default that follow one with a default."""
    m = _DEF.match(line.rstrip("\n"))
    if not m or "=" not in m.group(2):
        return line
    params, seen_default, changed = _split_params(m.group(2)), False, False
    for i, param in enumerate(params):
        name = param.strip()
        if name.startswith("*"):
            break
        if "=" in name:
            seen_default = True
        elif seen_default:
            params[i] = param + " = ..."
            changed = True
    if not changed:
        return line
    return m.group(1) + ",".join(params) + m.group(3) + ("\n" if line.endswith("\n") else "")


def fix_stub(text: str) -> str:
    """The stub text made valid: ``in`` parameters renamed ``in_``, defaults fixed, runtime imports dropped."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() in _DROP:
            continue
        if line.lstrip().startswith("def "):
            line = _fix_defaults(_IN_PARAM.sub(r"\1in_\2", line))
        lines.append(line)
    # mypy reports errors inside stubs found through MYPYPATH (untyped helpers, implicit Optional):
    # they are the stub authors', not ours.
    return "# mypy: ignore-errors\n" + "".join(lines)


def _write(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package (also for stub-only folders that are not importable)."""
    for entry in sys.path:
        candidate = Path(entry or ".") / name
        if candidate.is_dir() and any(candidate.glob("*.pyi")):
            return candidate
    return None


def copy_classic(out: Path) -> int:
    """Copy ``tensorrt`` and ``tensorrt_bindings`` stubs into ``out``; the number of files copied."""
    count = 0
    for package in ("tensorrt", "tensorrt_bindings"):
        src = _package_dir(package)
        if src is None:
            raise SystemExit(
                f"make_stubs: the {package}/ stubs are not installed; run "
                "`pip install --no-deps tensorrt-stubs` (or scripts/setup.sh with the dev extra)"
            )
        for pyi in sorted(src.rglob("*.pyi")):
            _write(out / package / pyi.relative_to(src), fix_stub(pyi.read_text(encoding="utf-8")))
            count += 1
    return count


def generate_rtx(out: Path) -> int:
    """Generate ``tensorrt_rtx`` and ``tensorrt_rtx_bindings`` stubs with stubgen; 0 when not installed."""
    if importlib.util.find_spec("tensorrt_rtx") is None:
        return 0
    count = 0
    with tempfile.TemporaryDirectory(prefix="stubgen-") as tmp:
        # mypy.stubgen is compiled: ``python -m mypy.stubgen`` fails, call its main() instead.
        stubgen = "from mypy.stubgen import main; main()"
        cmd = [sys.executable, "-c", stubgen, "-q", "-o", tmp, "-p", "tensorrt_rtx_bindings", "-m", "tensorrt_rtx"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"make_stubs: stubgen failed for tensorrt_rtx: {result.stderr.strip() or result.stdout}")
        for pyi in sorted(Path(tmp).rglob("*.pyi")):
            _write(out / pyi.relative_to(tmp), fix_stub(pyi.read_text(encoding="utf-8")))
            count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/make_stubs.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    print(f"make_stubs: {copy_classic(out)} classic TensorRT stub files in {out}")
    n = generate_rtx(out)
    print(f"make_stubs: {n} TensorRT-RTX stub files generated" if n else "make_stubs: tensorrt_rtx not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
