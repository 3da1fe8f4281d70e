"""A loaded bundle: preprocess (the manifest's spec) -> backend -> decode, with per-stage timings.

A :class:`Model` is safe to share between threads (the pipeline's inference thread and the HTTP API's
``POST /v1/infer``): every call into the backend holds :attr:`Model.lock`, a re-entrant lock, so calls are
serialised and a TensorRT execution context is never entered twice at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

import numpy as np

from edge.backends.base import Backend
from edge.errors import ConfigError
from edge.manifest import Artifact, Manifest, TensorSpec
from edge.preprocess import ImageLike, Meta, as_image, is_pil_image, network_size, preprocess
from edge.results import Result
from edge.runtime.bundle import Bundle
from edge.runtime.select import Choice

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 64  # a dynamic batch axis without an optimization profile (ONNX only)
DEFAULT_HW = (640, 640)  # example input size for dynamic height/width without a profile or preprocess.size


class Model:
    """Use :func:`edge.runtime.load` to make one."""

    def __init__(self, bundle: Bundle, choice: Choice, backend: Backend) -> None:
        self.bundle = bundle
        self.choice = choice
        self.backend = backend
        self.timings: dict[str, float] = {}
        self.lock = threading.RLock()
        self._input = self._image_input()
        self._batches: dict[tuple[tuple[int, ...], str], np.ndarray] = {}  # input buffers, one per shape

    # ---- facts -----------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def artifact(self) -> Artifact:
        return self.choice.artifact

    @property
    def backend_name(self) -> str:
        """``tensorrt``, ``tensorrt-rtx``, ``onnxruntime-cuda`` or ``onnxruntime-cpu``."""
        if self.choice.backend == "onnxruntime":
            active = getattr(self.backend, "active_providers", ()) or self.choice.providers
            prov = active[0].replace("ExecutionProvider", "").lower() if active else "cpu"
            return f"onnxruntime-{prov}"
        return self.choice.backend

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.backend.outputs

    @property
    def max_batch(self) -> int:
        """The largest batch one call takes (1 when the input has no batch axis: a scalar, or an image input of
        rank 3, [C, H, W] or [H, W, C], as torchvision's detection exports take)."""
        spec = self.inputs[0]
        if not spec.shape or (spec.name == self.manifest.preprocess.input and len(spec.shape) == 3):
            return 1
        if spec.shape[0] > 0:
            return spec.shape[0]
        if spec.profile:
            return int(spec.profile["max"][0])
        return DEFAULT_MAX_BATCH

    def _image_input(self) -> TensorSpec | None:
        name = self.manifest.preprocess.input
        return next((t for t in self.inputs if t.name == name), None)

    # ---- inputs ----------------------------------------------------------------------------------------
    def example_shape(self, spec: TensorSpec, batch: int = 1) -> tuple[int, ...]:
        """A concrete shape for ``spec``: the profile's opt (batch replaced), else preprocess.size / defaults."""
        if spec.profile:
            shape = list(spec.profile["opt"])
        else:
            shape = list(spec.shape)
            pre = self.manifest.preprocess
            if spec.name == pre.input and len(shape) == 4:
                h, w = pre.size or DEFAULT_HW
                hw_axes = (2, 3) if pre.layout == "nchw" else (1, 2)
                for axis, value in zip(hw_axes, (h, w)):
                    if shape[axis] < 0:
                        shape[axis] = value
            shape = [1 if d < 0 else d for d in shape]
        if shape and spec.shape and spec.shape[0] < 0:
            shape[0] = batch
        return tuple(shape)

    def example_inputs(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Deterministic inputs of the right shapes and dtypes (bench, warm-up, doctor)."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for spec in self.inputs:
            shape = self.example_shape(spec, batch)
            dtype = np.dtype(spec.dtype)
            if dtype.kind == "f":
                feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype == np.bool_:
                feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                feeds[spec.name] = rng.integers(0, 128, shape).astype(dtype)
        return feeds

    def warmup(self, iterations: int = 2) -> None:
        """Run ``iterations`` inferences on example inputs (JIT, allocations, caches) before real frames."""
        if iterations <= 0:
            return
        feeds = self.example_inputs()
        t0 = time.perf_counter()
        with self.lock:
            for _ in range(iterations):
                self.backend.infer(feeds)
        log.debug("warm-up: %d iterations in %.1f ms", iterations, (time.perf_counter() - t0) * 1000)

    # ---- inference -------------------------------------------------------------------------------------
    def infer_raw(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the backend on ready tensors (name -> array); shapes and dtypes are checked."""
        with self.lock:
            outputs = self.backend.infer(tensors)
            self.timings = dict(self.backend.timings)
        return outputs

    def predict(self, image: ImageLike) -> Result:
        """One image to its result in original-image pixels.

        ``image``: a numpy array as OpenCV gives it (HxW gray, HxWx3 BGR, HxWx4 BGRA, uint8), a PIL image
        (any mode; PIL's RGB order is converted) or an image file path.
        """
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageLike]) -> list[Result]:
        """Results for many images (arrays, PIL images or paths, as :meth:`predict`), in batches of up to
        :attr:`max_batch`."""
        if isinstance(images, (np.ndarray, str, os.PathLike)) or is_pil_image(images):
            raise ConfigError(
                f"predict_batch: expected a list of images, got one {type(images).__name__}; use predict(image) "
                "or predict_batch([image1, image2, ...])"
            )
        self._image_spec()
        results: list[Result] = []
        totals = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        step = max(1, self.max_batch)
        with self.lock:
            for start in range(0, len(images), step):
                chunk = images[start : start + step]
                results.extend(self._run_chunk(chunk, start, totals))
            self.timings = totals
        return results

    def _image_spec(self) -> TensorSpec:
        if self._input is None or len(self.inputs) != 1:
            raise ConfigError(
                f"predict: the model has inputs {[t.name for t in self.inputs]} and preprocess.input "
                f"{self.manifest.preprocess.input!r}; images need a single image input, use infer_raw(tensors)"
            )
        if len(self._input.shape) != 4:
            raise ConfigError(
                f"predict: input {self._input.name!r} has shape {list(self._input.shape)}; images need a 4-D input "
                f"with a batch axis ({self.manifest.preprocess.layout.upper()}): re-export the model with one, "
                "or feed tensors with infer_raw(tensors)"
            )
        return self._input

    def prepare(self, images: Sequence[ImageLike], offset: int = 0) -> tuple[dict[str, np.ndarray], list[Meta]]:
        """The input tensor for up to :attr:`max_batch` images, exactly as :meth:`predict_batch` feeds it
        (sized by :func:`edge.preprocess.network_size` within the optimization profile), and each image's
        :class:`~edge.preprocess.Meta`. The tensor is a reused buffer: copy it to keep it past the next call."""
        spec = self._image_spec()
        pre = self.manifest.preprocess
        bgr = [as_image(img, f"image {offset + i}") for i, img in enumerate(images)]
        if not bgr:
            raise ConfigError("predict: no images given")
        sizes = [network_size(pre, spec.shape, img.shape[:2], spec.profile) for img in bgr]
        h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
        shape = list(spec.shape)
        hw_axes = (2, 3) if pre.layout == "nchw" else (1, 2)
        shape[hw_axes[0]], shape[hw_axes[1]] = h, w
        n = len(bgr)
        if spec.shape[0] > 0:
            shape[0] = spec.shape[0]  # a fixed batch is padded with zeros
        else:
            low = int(spec.profile["min"][0]) if spec.profile else 1
            shape[0] = max(n, low)  # so is a batch below the profile's smallest
        batch = self._batch_buffer(tuple(shape), pre.dtype, n)
        metas: list[Meta] = []
        one = (1, *shape[1:])
        for i, img in enumerate(bgr):
            _, meta = preprocess(img, pre, one, out=batch[i : i + 1])
            metas.append(meta)
        return {spec.name: batch}, metas

    def _run_chunk(self, chunk: Sequence[ImageLike], offset: int, totals: dict[str, float]) -> list[Result]:
        from edge.decoders import decode

        t0 = time.perf_counter()
        feeds, metas = self.prepare(chunk, offset)
        n = len(metas)
        sent = next(iter(feeds.values())).shape[0]
        t1 = time.perf_counter()
        outputs = self.backend.infer(feeds)
        if sent != n:
            outputs = {k: v[:n] if v.ndim and v.shape[0] == sent else v for k, v in outputs.items()}
        t2 = time.perf_counter()
        results = decode(outputs, self.manifest.postprocess, metas)
        t3 = time.perf_counter()
        totals["preprocess"] += (t1 - t0) * 1000.0
        totals["infer"] += (t2 - t1) * 1000.0
        totals["postprocess"] += (t3 - t2) * 1000.0
        for stage, ms in self.backend.timings.items():
            if stage != "infer":
                totals[stage] = totals.get(stage, 0.0) + ms
        return list(results)

    def _batch_buffer(self, shape: tuple[int, ...], dtype: str, used: int) -> np.ndarray:
        """The input tensor for ``shape``, allocated once and reused (a live source keeps one shape);
        slots past ``used`` (a fixed batch padded with zeros) are cleared."""
        key = (shape, dtype)
        buf = self._batches.get(key)
        if buf is None:
            if len(self._batches) >= 4:  # images of ever-changing sizes: do not hoard buffers
                self._batches.clear()
            buf = self._batches[key] = np.zeros(shape, dtype=np.dtype(dtype))
        elif used < shape[0]:
            buf[used:] = 0
        return buf

    # ---- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        with self.lock:
            self.backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({self.manifest.name!r}, artifact={self.artifact.file!r}, backend={self.backend_name!r})"
