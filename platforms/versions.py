"""Versions of the libraries and toolkits found on this machine, read cheaply and never guessed."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path

from edge.errors import first_line


def package_version(module: str) -> str | None:
    """Version of the importable package ``module`` (``"tensorrt"``, ``"tensorrt_rtx"``), or None.

    A folder without code (for instance the ``tensorrt`` namespace left by ``tensorrt-stubs``,
    which holds only ``.pyi`` files) is not an installation. The version comes from the
    distribution metadata; only when there is none is the module imported for ``__version__``.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or spec.origin.endswith(".pyi"):
        return None
    for dist in importlib.metadata.packages_distributions().get(module, []):
        if dist.endswith("-stubs"):
            continue
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        version = getattr(importlib.import_module(module), "__version__", None)
    except Exception:  # a broken installation is "not found", whatever it raises
        return None
    return str(version) if version else None


def cuda_toolkit_version(sysroot: Path) -> str | None:
    """The CUDA toolkit installed at ``<sysroot>/usr/local/cuda`` (``version.json`` or ``version.txt``)."""
    cuda = sysroot / "usr/local/cuda"
    try:
        data = json.loads((cuda / "version.json").read_text(encoding="utf-8"))
        version = data["cuda"]["version"]
        if isinstance(version, str) and version:
            return version
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        text = (cuda / "version.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    words = text.split()
    return words[-1] if words and words[-1][:1].isdigit() else None


def import_problem(exc: ImportError) -> str | None:
    """One line for an OpenCV (``cv2``) that is missing or fails to import, else None (not ours to explain).

    The usual failure on a Jetson: JetPack's OpenCV is built against numpy 1.x and a pip install pulled
    numpy 2 ("A module that was compiled using NumPy 1.x cannot be run in NumPy 2.x"): cv2's import then
    raises an ImportError that is not a ModuleNotFoundError.
    """
    import traceback

    text = first_line(exc, type(exc).__name__)
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    inside_cv2 = any("/cv2/" in f.filename.replace("\\", "/") for f in frames)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "cv2":
        return (
            "OpenCV (cv2) is not installed: pip install opencv-python-headless (on a Jetson: JetPack's "
            "python3-opencv, seen from a venv made with --system-site-packages)"
        )
    if exc.name != "cv2" and not inside_cv2:
        return None
    numpy = package_version("numpy")
    if numpy is not None and numpy.split(".")[0].isdigit() and int(numpy.split(".")[0]) >= 2:
        return (
            f"OpenCV (cv2) failed to import ({text}): it was built against numpy 1.x and numpy {numpy} is "
            "installed (JetPack's OpenCV is); pip install 'numpy<2' in this environment"
        )
    return f"OpenCV (cv2) failed to import ({text}); reinstall it (pip: opencv-python-headless, Jetson: python3-opencv)"
