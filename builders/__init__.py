"""The offline builder: ONNX model -> bundle (precision-transformed ONNX + TensorRT/TensorRT-RTX plans).

``build(options)`` runs the whole pipeline (see :mod:`builders.assemble`); the submodules are imported
lazily so that ``from builders.progress_bar import ProgressBar`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builders.options import BuildOptions

__all__ = ["build"]


def build(options: BuildOptions) -> Path:
    """Build the bundle described by ``options`` and return its path (see :mod:`builders.assemble`)."""
    from builders.assemble import build as _build

    return _build(options)
