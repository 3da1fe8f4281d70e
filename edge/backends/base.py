"""The one backend interface; lifecycle, input checks and timing live here, backends fill the hooks.

    with OnnxRuntimeBackend(path, manifest.inputs, manifest.outputs) as b:
        outputs = b.infer({"input": tensor})      # dict name -> numpy array
        b.timings                                 # {"infer": ms, and "h2d"/"compute"/"d2h" where measured}

A subclass implements ``_load() -> (inputs, outputs)`` (its view of the tensors), ``_infer(feeds) ->
outputs`` and ``_close()``. Inputs are checked here against the backend's specs and the manifest's
optimization profile before ``_infer`` sees them; ``_infer`` may record extra stage times in
``self._stages``.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import ClassVar

import numpy as np

from edge.errors import ConfigError, EngineError
from edge.manifest import TensorSpec

log = logging.getLogger(__name__)


class Backend(abc.ABC):
    """Base of every backend: ``load``, ``inputs``/``outputs``, ``infer``, ``timings``, ``close``."""

    name: ClassVar[str] = "backend"

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        self._manifest_inputs = {t.name: t for t in inputs}
        self._manifest_outputs = [t.name for t in outputs]
        self._inputs: list[TensorSpec] = list(inputs)
        self._outputs: list[TensorSpec] = list(outputs)
        self._loaded = False
        self._closed = False
        self._stages: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self.calls = 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    def load(self) -> Backend:
        """Load the model once (idempotent); returns self."""
        if self._closed:
            raise EngineError(f"{self.name}: backend was closed; load the model again with edge.runtime.load")
        if self._loaded:
            return self
        t0 = time.perf_counter()
        try:
            inputs, outputs = self._load()
        except BaseException:
            try:  # release what a half-finished _load created (streams, buffers); the first error wins
                self._close()
            except Exception as exc:
                log.debug("%s: cleanup after a failed load: %s", self.name, exc)
            raise
        self._loaded = True
        self._inputs = self._merge(inputs, self._manifest_inputs, "inputs")
        self._outputs = list(outputs)
        missing = [n for n in self._manifest_outputs if n not in {o.name for o in outputs}]
        if missing:
            self.close()
            raise EngineError(
                f"{self.name}: the model has no output(s) {', '.join(missing)} listed in the manifest "
                f"(it has {', '.join(o.name for o in outputs)}); the bundle is inconsistent, rebuild it"
            )
        self.timings = {"load": (time.perf_counter() - t0) * 1000.0}
        return self

    def _merge(self, actual: Sequence[TensorSpec], manifest: Mapping[str, TensorSpec], what: str) -> list[TensorSpec]:
        names = [t.name for t in actual]
        if manifest and sorted(names) != sorted(manifest):
            self.close()
            raise EngineError(
                f"{self.name}: the model's {what} {', '.join(names)} differ from the manifest's "
                f"{', '.join(manifest)}; the bundle is inconsistent, rebuild it with `edge build`"
            )
        merged = []
        for t in actual:
            m = manifest.get(t.name)
            shape = t.shape
            if m is not None and len(m.shape) == len(t.shape):
                if any(a >= 0 and b >= 0 and a != b for a, b in zip(t.shape, m.shape)):
                    self.close()
                    raise EngineError(
                        f"{self.name}: {what[:-1]} {t.name!r} has shape {list(t.shape)} in the model but "
                        f"{list(m.shape)} in the manifest; the bundle is inconsistent, rebuild it with `edge build`"
                    )
                shape = tuple(b if a < 0 else a for a, b in zip(t.shape, m.shape))  # the stricter of the two
            profile = t.profile or (m.profile if m else None)
            merged.append(TensorSpec(t.name, t.dtype, shape, profile))
        return merged

    def close(self) -> None:
        """Release the model and its buffers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._loaded:
            try:
                self._close()
            finally:
                self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- introspection ---------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)

    @property
    def loaded(self) -> bool:
        return self._loaded

    def describe(self) -> str:
        return self.name

    # ---- inference -------------------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (input name -> array); returns output name -> array (owned by the caller)."""
        if not self._loaded:
            if self._closed:
                raise EngineError(f"{self.name}: backend was closed; load the model again with edge.runtime.load")
            self.load()
        checked = self.check_inputs(feeds)
        self._stages = {}
        t0 = time.perf_counter()
        outputs = self._infer(checked)
        infer_ms = (time.perf_counter() - t0) * 1000.0
        self.timings = {"infer": infer_ms, **self._stages}
        self.calls += 1
        return outputs

    def check_inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds as C-contiguous arrays, or a ConfigError naming the input, what came and what is expected."""
        if not isinstance(feeds, Mapping):
            raise ConfigError(
                f"{self.name}: inputs must be a dict of input name -> numpy array, got {type(feeds).__name__}"
            )
        expected = [t.name for t in self._inputs]
        unknown = [k for k in feeds if k not in expected]
        missing = [k for k in expected if k not in feeds]
        if unknown or missing:
            raise ConfigError(
                f"{self.name}: inputs {sorted(feeds)} do not match the model's {expected}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unknown {unknown})" if unknown else "")
            )
        out: dict[str, np.ndarray] = {}
        for spec in self._inputs:
            arr = feeds[spec.name]
            if not isinstance(arr, np.ndarray):
                raise ConfigError(
                    f"{self.name}: input {spec.name!r} must be a numpy array in host memory, got {type(arr).__name__}"
                )
            if arr.dtype != np.dtype(spec.dtype):
                raise ConfigError(
                    f"{self.name}: input {spec.name!r} has dtype {arr.dtype}, expected {spec.dtype}; "
                    f"convert it with .astype(np.{spec.dtype})"
                )
            check_shape(spec, tuple(arr.shape), self.name)
            out[spec.name] = np.ascontiguousarray(arr)
        return out

    # ---- hooks -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Load the model; return its input and output specs (``-1`` for dynamic axes)."""

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run checked feeds; return every output as a numpy array the caller may keep."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release what ``_load`` created."""


def check_shape(spec: TensorSpec, shape: tuple[int, ...], who: str = "model") -> None:
    """A ConfigError unless ``shape`` fits ``spec`` (rank, fixed axes, and the profile's min..max)."""
    want = "[" + ", ".join("?" if d < 0 else str(d) for d in spec.shape) + "]"
    if len(shape) != len(spec.shape):
        raise ConfigError(
            f"{who}: input {spec.name!r} has shape {list(shape)} (rank {len(shape)}), expected {want} "
            f"(rank {len(spec.shape)})"
        )
    for axis, (got, fixed) in enumerate(zip(shape, spec.shape)):
        if fixed >= 0 and got != fixed:
            raise ConfigError(f"{who}: input {spec.name!r} has shape {list(shape)}, expected {want} (axis {axis})")
        if got <= 0:
            raise ConfigError(f"{who}: input {spec.name!r} has an empty axis {axis} in shape {list(shape)}")
    if spec.profile:
        lo, hi = spec.profile["min"], spec.profile["max"]
        if len(lo) == len(shape) and any(not lo[i] <= shape[i] <= hi[i] for i in range(len(shape))):
            raise ConfigError(
                f"{who}: input {spec.name!r} shape {list(shape)} is outside the bundle's optimization profile "
                f"{list(lo)}..{list(hi)}; resize the input or rebuild with a wider profile"
            )
