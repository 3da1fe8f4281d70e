"""The model, split into the pipeline's stages: prepare (preprocess, host), infer (backend), finish (decode, host).

With a runtime :class:`~edge.runtime.Model` (a manifest, one image input and ``infer_raw``), the
pipeline preprocesses on its own thread while the backend runs the previous frame, so throughput
approaches the slowest stage. A model that only offers ``predict_batch`` (the small protocol below)
runs whole in the inference stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from edge.preprocess import Meta, preprocess, to_bgr
from edge.results import Result


class PipelineModel(Protocol):
    """What the pipeline needs from a model (``edge.runtime.Model`` has all of it)."""

    @property
    def max_batch(self) -> int: ...

    @property
    def timings(self) -> Mapping[str, float]: ...

    def predict(self, image: np.ndarray) -> Result: ...

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Result]: ...

    def close(self) -> None: ...


Prepared = tuple[np.ndarray | None, Meta | None]


class ModelStages:
    """``prepare(image)`` on the host thread, ``infer(tensors)`` on the backend thread, ``finish`` on the host."""

    def __init__(self, model: PipelineModel, max_batch: int | None = None) -> None:
        self.model = model
        self.max_batch = max(1, min(int(getattr(model, "max_batch", 1) or 1), max_batch or 1 << 30))
        self.split = False
        self._input_name = ""
        self._input_shape: tuple[int, ...] = ()
        self._profile: Any = None  # the input's optimization profile: sizes dynamic height/width
        self._fixed_batch = 0
        manifest = getattr(model, "manifest", None)
        inputs = getattr(model, "inputs", None)
        if manifest is not None and inputs is not None and hasattr(model, "infer_raw") and len(inputs) == 1:
            spec = inputs[0]
            if spec.name == manifest.preprocess.input and len(spec.shape) == 4:
                self.split = True
                self._pre = manifest.preprocess
                self._post = manifest.postprocess
                self._input_name = spec.name
                self._input_shape = tuple(spec.shape)
                self._profile = spec.profile
                self._fixed_batch = spec.shape[0] if spec.shape[0] > 0 else 0
                if self._fixed_batch:
                    self.max_batch = self._fixed_batch if self._fixed_batch == 1 else 1
                    self.split = self._fixed_batch == 1  # a fixed batch > 1 needs full batches: predict_batch pads

    @property
    def mode(self) -> str:
        return "split (preprocess | infer | decode on separate threads)" if self.split else "fused (predict_batch)"

    def prepare(self, image: np.ndarray) -> Prepared:
        if not self.split:
            return None, None
        one = (1, *self._input_shape[1:])
        tensor, meta = preprocess(to_bgr(image), self._pre, one, profile=self._profile)
        return tensor, meta

    def infer(self, tensors: Sequence[np.ndarray], images: Sequence[np.ndarray]) -> tuple[Any, dict[str, float]]:
        """Split: raw outputs of the batch. Fused: the results. Plus the stage timings (ms)."""
        if not self.split:
            results = self.model.predict_batch(list(images))
            return results, dict(self.model.timings)
        batch = tensors[0] if len(tensors) == 1 else np.concatenate(tensors, axis=0)
        outputs = self.model.infer_raw({self._input_name: batch})  # type: ignore[attr-defined]
        return outputs, {}

    def finish(self, outputs: Any, metas: Sequence[Meta | None]) -> list[Result]:
        if not self.split:
            return list(outputs)
        from edge.decoders import decode

        return list(decode(outputs, self._post, [m for m in metas if m is not None]))
