"""Versions of the libraries and toolkits found on this machine, read cheaply and never guessed."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path


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
