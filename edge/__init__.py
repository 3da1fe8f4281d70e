"""edge: the lean on-device runtime of the edge deployment kit.

``import edge`` pulls only the standard library; numpy, OpenCV and backend libraries are imported
by the modules that need them, and never onnx, onnxsim/onnxslim, torch or ``builders``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from edge.errors import (
    BuildError,
    BundleError,
    ConfigError,
    EdgeError,
    EngineError,
    NotJetsonError,
    PowerError,
    ServiceError,
    SourceError,
)

if TYPE_CHECKING:
    from edge.runtime import Bundle, Model


def load(bundle: str | os.PathLike[str] | Bundle, backend: str | None = None, **options: Any) -> Model:
    """:func:`edge.runtime.load` (imported at the first call, so ``import edge`` stays lean):
    ``edge.load("yolo.bundle").predict(image)``. Same arguments (``state_dir``, ``warmup``, ``gpu`` ...)."""
    from edge.runtime import load as load_bundle

    return load_bundle(bundle, backend, **options)


__all__ = [
    "BuildError",
    "BundleError",
    "ConfigError",
    "EdgeError",
    "EngineError",
    "NotJetsonError",
    "PowerError",
    "ServiceError",
    "SourceError",
    "__version__",
    "load",
]
