#!/usr/bin/env python3
"""Build a bundle on the device it will run on: the one file to copy to a Jetson.

Classic TensorRT builds a plan for the GPU it runs on, so Jetson plans are built on the Jetson (with
the TensorRT that JetPack installs). This script is ``edge build`` with ``--target auto`` (this
machine) as the default and takes every ``edge build`` flag (see docs/build.md)::

    python3 build_engine.py MODEL.onnx -o MODEL.bundle                      # fp16 plan for this Jetson
    python3 build_engine.py MODEL.onnx -o MODEL.bundle --precision int8 --calib images/ --dla 0
    python3 build_engine.py --help

Where the kit comes from, in this order:

1. a packed copy: ``python scripts/build_engine.py --pack build_engine.pyz`` (on any machine with the
   kit) writes ONE executable file carrying the kit's pure-Python packages (``edge``, ``builders``,
   ``platforms`` with its target profiles) and this script. Copy it to the Jetson and run
   ``python3 build_engine.pyz MODEL.onnx -o MODEL.bundle``; it unpacks itself once into
   ``~/.cache/edge-kit/<hash>/`` (or ``$EDGE_KIT_CACHE``) and runs from there.
2. the checkout this file sits in (``<checkout>/scripts/build_engine.py``);
3. the installed kit (``pip install edge-kit[build]``).

The kit is pure Python; the device needs the builder's dependencies either way (nothing is downloaded
at run time):

- TensorRT 10.x (JetPack 6.1+ ``python3-libnvinfer``; TensorRT 8.6 of JetPack 6.0 is refused);
- OpenCV (JetPack's ``python3-opencv``: calibration and accuracy images) and numpy 1.x (JetPack's OpenCV
  is built against numpy 1.x and fails to import under numpy 2);
- PyYAML (the target profiles), onnx (loading, the FP16 conversion), onnxruntime (accuracy check, INT8
  calibration); onnxslim is optional (the simplifier).

On JetPack 6: ``pip3 install onnx onnxruntime onnxslim 'numpy<2' pyyaml``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

PACKAGES = ("edge", "builders", "platforms")


def _cache_root() -> Path:
    return Path(os.environ.get("EDGE_KIT_CACHE") or Path.home() / ".cache" / "edge-kit")


def _unpack(archive: Path) -> Path:
    """Extract the packed kit once (keyed by the archive's hash); the folder to import it from."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = _cache_root() / digest
    if not (target / ".complete").is_file():
        import shutil

        shutil.rmtree(target, ignore_errors=True)  # a run interrupted while renaming
        tmp = target.with_name(f".{digest}.tmp-{os.getpid()}")
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:  # another run unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


SCRIPT_OPTIONS = """this script's own options (given alone):
  --pack OUT.pyz   write one executable file carrying the kit and this script (copy it to the device)
  --which          say where the kit was found (packed copy, checkout or installed)"""


def find_kit() -> str:
    """Put the kit on ``sys.path``; where it was found (for ``--which``)."""
    here = Path(__file__).resolve()
    if here.parent.is_file() and zipfile.is_zipfile(here.parent):  # running as build_engine.pyz
        unpacked = _unpack(here.parent)
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here.parent]
        sys.path.insert(0, str(unpacked))
        return f"packed copy {here.parent} (unpacked in {unpacked})"
    checkout = here.parent.parent
    if all((checkout / pkg / "__init__.py").is_file() for pkg in PACKAGES):
        sys.path.insert(0, str(checkout))
        return f"checkout {checkout}"
    try:
        import builders  # noqa: F401
        import edge
    except ImportError:
        raise SystemExit(
            f"error: the edge kit was not found: {here.name} is not a packed copy, {checkout} holds no "
            f"edge/, builders/ and platforms/, and {Path(sys.executable).name} cannot import them; this script "
            "alone is not enough: on a machine with the kit run `python scripts/build_engine.py --pack "
            "build_engine.pyz` and copy that one file here, or install the kit (`pip install edge-kit[build]`)"
        ) from None
    return f"installed {Path(edge.__file__).parent.parent}"


def pack(out: Path) -> Path:
    """Write a single executable zip (``python3 OUT ...``) carrying the kit and this script."""
    import importlib

    out = out.resolve()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("__main__.py", Path(__file__).read_text(encoding="utf-8"))
            for name in PACKAGES:
                root = Path(importlib.import_module(name).__file__ or "").parent
                for path in sorted(root.rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                        z.write(path, Path(name) / path.relative_to(root))
        data = tmp.read_bytes()
        tmp.write_bytes(b"#!/usr/bin/env python3\n" + data)  # a zip may carry a prefix: `./build_engine.pyz` runs
        tmp.chmod(0o755)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def main(argv: list[str]) -> int:
    where = find_kit()
    if argv[:1] == ["--which"]:
        print(where)
        return 0
    if argv[:1] == ["--pack"]:
        if len(argv) != 2:
            print("usage: build_engine.py --pack OUT.pyz", file=sys.stderr)
            return 2
        print(pack(Path(argv[1])))
        return 0
    from edge.cli.build import standalone

    return standalone(argv, prog=Path(sys.argv[0]).name, epilog=SCRIPT_OPTIONS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
