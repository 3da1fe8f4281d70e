"""The offline builder: ONNX model -> bundle (precision-transformed ONNX + TensorRT/TensorRT-RTX plans).

``build(options)`` runs the whole pipeline (see :mod:`builders.pipeline`); the submodules are imported
lazily so that ``from builders.progress import Progress`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builders.options import BuildOptions

__all__ = ["build"]


def build(options: BuildOptions) -> Path:
    """Build the bundle described by ``options`` and return its path (see :mod:`builders.pipeline`)."""
    from builders.pipeline import build as _build

    return _build(options)
