"""edge: the lean on-device runtime of the edge deployment kit.

``import edge`` pulls only the standard library; numpy, OpenCV and backend libraries are imported
by the modules that need them, and never onnx, onnxsim/onnxslim, torch or ``builders``.
"""

from __future__ import annotations

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
]
