"""The one TensorRT logger of the process, per TensorRT module (``tensorrt``, ``tensorrt_rtx``).

TensorRT keeps one logger per process: the first ``Builder``/``Runtime`` fixes it and later ones are
ignored, so a logger owned by one backend object would receive every later backend's errors, and once
that object is freed TensorRT would call into a dead one. So the builder and every backend share
:func:`process_logger`, which lives as long as the module, and read the errors of *their* call through
:meth:`collect`::

    logger = process_logger(trt)
    with logger.collect() as errors:
        engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineError("; ".join(errors[-2:]))

Messages go to :mod:`logging` (``edge.tensorrt``): errors at ERROR outside a :meth:`collect` block and at
DEBUG inside one (the caller puts them into its exception), warnings at WARNING, the rest at DEBUG.
A Ctrl-C arriving inside the callback cannot cross TensorRT's C++ frames: it sets ``interrupted``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger("edge.tensorrt")

# TensorRT warnings that say nothing actionable (logged at debug level instead).
BENIGN_WARNINGS = ("Overriding data to nullptr",)


def flavour_name(trt: ModuleType) -> str:
    return "TensorRT-RTX" if trt.__name__.startswith("tensorrt_rtx") else "TensorRT"


@functools.cache
def _logger_class(trt: ModuleType) -> type:
    name = flavour_name(trt)

    class ProcessLogger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.interrupted = False
            self._lock = threading.Lock()
            self._collectors: list[list[str]] = []

        @contextlib.contextmanager
        def collect(self) -> Iterator[list[str]]:
            """The errors TensorRT logs while the block runs (from any thread), in order."""
            errors: list[str] = []
            with self._lock:
                self._collectors.append(errors)
            try:
                yield errors
            finally:
                with self._lock:
                    self._collectors = [c for c in self._collectors if c is not errors]

        def log(self, severity: Any, msg: str) -> None:
            try:
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    with self._lock:
                        collectors = list(self._collectors)
                    for errors in collectors:
                        errors.append(msg.strip())
                    log.log(logging.DEBUG if collectors else logging.ERROR, "%s: %s", name, msg)
                elif severity == trt.ILogger.WARNING and not any(b in msg for b in BENIGN_WARNINGS):
                    log.warning("%s: %s", name, msg)
                else:
                    log.debug("%s: %s", name, msg)
            except KeyboardInterrupt:
                self.interrupted = True

    return ProcessLogger


@functools.cache
def process_logger(trt: ModuleType) -> Any:
    """The process-wide ``trt.ILogger`` for ``trt`` (created once, never freed)."""
    return _logger_class(trt)()
