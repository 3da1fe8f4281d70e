"""One served model version: its instances, its batcher, request validation, and the image path.

Raw tensors: the request's tensors are checked against the model's inputs (names, datatypes, ranks,
fixed dimensions, the optimization profile's bounds), so a bad request fails alone before it can join
a batch. Image path: a BYTES input ``image`` (encoded JPEG/PNG, one element per image) is decoded and
preprocessed by the bundle's own spec, run through the same batcher, decoded, and answered as a BYTES
output ``results`` holding each image's JSON, the same JSON as ``edge infer --json`` prints (without
its ``image`` path key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.manifest import TensorSpec
from edge.runtime.model import Model
from edge.serve.batcher import Batcher, BatchStats
from edge.serve.metrics import ServeMetrics
from edge.serve.modelconfig import ModelConfig
from edge.serve.options import Limits
from edge.serve.status import RequestError
from edge.serve.tensors import datatype_of

log = logging.getLogger(__name__)

IMAGE_INPUT = "image"
RESULTS_OUTPUT = "results"
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "tensorrt-rtx": "tensorrt_rtx_plan"}


@dataclass
class Tensor:
    """A decoded request or response tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class InferRequest:
    model: str
    version: str
    id: str
    inputs: list[Tensor]
    outputs: list[str] | None  # requested output names, None: all


@dataclass
class InferResponse:
    model: str
    version: str
    id: str
    outputs: list[Tensor]


class ServedModel:
    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        config: ModelConfig,
        instances: Sequence[Model],
        metrics: ServeMetrics,
        limits: Limits,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.config = config
        self.instances = list(instances)
        self.metrics = metrics
        self.limits = limits
        first = self.instances[0]
        self.manifest = first.manifest
        self.inputs: list[TensorSpec] = list(first.inputs)
        self.outputs: list[TensorSpec] = list(first.outputs)
        self.backend_name = first.backend_name
        self.platform = PLATFORMS.get(first.choice.backend, first.choice.backend)
        self.batchable = all(t.shape and t.shape[0] < 0 for t in self.inputs)
        self.max_batch = min(config.max_batch, first.max_batch) if self.batchable else 1
        self.image_input = self._image_input()
        self.active = 0
        self._released = asyncio.Event()
        self._released.set()
        self.batcher = Batcher(
            f"{name}/{version}",
            self.instances,
            max_batch=self.max_batch,
            batchable=self.batchable,
            dynamic=config.dynamic_batching,
            preferred=config.preferred_batch,
            max_queue_delay_us=config.max_queue_delay_us,
            max_queue=config.max_queue or limits.max_queue,
            on_batch=self._on_batch,
        )

    def _image_input(self) -> TensorSpec | None:
        pre = self.manifest.preprocess.input
        spec = next((t for t in self.inputs if t.name == pre), None)
        if spec is None or len(self.inputs) != 1 or len(spec.shape) != 4:
            return None
        return spec

    def _on_batch(self, stats: BatchStats) -> None:
        self.metrics.on_batch(self.name, self.version, stats)

    # ---- description ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": datatype_of(t.dtype), "shape": list(t.shape)} for t in specs]

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": tensors(self.inputs),
            "outputs": tensors(self.outputs),
        }

    def extra(self) -> dict[str, Any]:
        """What the HTTP metadata adds under ``edge``: the image path's tensors and the serving setup."""
        info: dict[str, Any] = {
            "backend": self.backend_name,
            "max_batch": self.max_batch,
            "dynamic_batching": self.batcher.dynamic,
            "instances": len(self.instances),
            "task": self.manifest.postprocess.task,
        }
        if self.image_input is not None:
            info["image_input"] = {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]}
            info["results_output"] = {"name": RESULTS_OUTPUT, "datatype": "BYTES", "shape": [-1]}
        return info

    def config_json(self) -> dict[str, Any]:
        """A Triton-style model configuration (what tritonclient's get_model_config shows)."""
        return {
            "name": self.name,
            "platform": self.platform,
            "max_batch_size": self.max_batch if self.batchable else 0,
            "input": [
                {
                    "name": t.name,
                    "data_type": "TYPE_" + datatype_of(t.dtype).replace("BYTES", "STRING"),
                    "dims": list(t.shape[1:] if self.batchable else t.shape),
                }
                for t in self.inputs
            ],
            "output": [
                {
                    "name": t.name,
                    "data_type": "TYPE_" + datatype_of(t.dtype).replace("BYTES", "STRING"),
                    "dims": list(t.shape[1:] if self.batchable else t.shape),
                }
                for t in self.outputs
            ],
            "instance_group": [
                {
                    "count": len(self.instances),
                    "kind": "KIND_GPU" if self.config.gpus else "KIND_CPU",
                    "gpus": list(self.config.gpus),
                }
            ],
            "dynamic_batching": {
                "preferred_batch_size": list(self.config.preferred_batch),
                "max_queue_delay_microseconds": self.config.max_queue_delay_us,
            }
            if self.batcher.dynamic
            else None,
        }

    # ---- requests ------------------------------------------------------------------------------------
    def acquire(self) -> None:
        self.active += 1
        self._released.clear()

    def release(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._released.set()

    async def retire(self) -> None:
        """Wait for every request that picked this version, drain the batcher, close the instances."""
        await self._released.wait()
        await self.batcher.drain()
        loop = asyncio.get_running_loop()
        for model in self.instances:
            await loop.run_in_executor(None, model.close)

    async def infer(self, req: InferRequest, deadline: float) -> InferResponse:
        names = [t.name for t in req.inputs]
        if IMAGE_INPUT in names and IMAGE_INPUT not in {t.name for t in self.inputs}:
            outputs = await self._infer_images(req, deadline)
        else:
            outputs = await self._infer_tensors(req, deadline)
        return InferResponse(self.name, self.version, req.id, outputs)

    def _timeout(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestError("timeout", f"model {self.name}: the request timed out before it could run")
        return left

    def check_inputs(self, given: list[Tensor]) -> tuple[dict[str, np.ndarray], int]:
        """The backend's feeds and the request's batch size, or a RequestError saying what is wrong."""
        by_name: dict[str, Tensor] = {}
        for t in given:
            if t.name in by_name:
                raise RequestError("invalid", f"model {self.name}: input {t.name!r} is given twice")
            by_name[t.name] = t
        expected = {s.name for s in self.inputs}
        unknown = sorted(set(by_name) - expected)
        if unknown:
            raise RequestError(
                "invalid", f"model {self.name}: unexpected input {unknown[0]!r}; its inputs are {sorted(expected)}"
            )
        feeds: dict[str, np.ndarray] = {}
        batch: int | None = None
        for spec in self.inputs:
            if spec.name not in by_name:
                raise RequestError("invalid", f"model {self.name}: input {spec.name!r} is missing")
            t = by_name[spec.name]
            want = datatype_of(spec.dtype)
            if t.datatype != want:
                raise RequestError(
                    "invalid", f"model {self.name}: input {spec.name!r} is {want}, the request sent {t.datatype}"
                )
            self._check_shape(spec, t.shape)
            if self.batchable:
                if batch is not None and t.shape[0] != batch:
                    raise RequestError("invalid", f"model {self.name}: inputs disagree on the batch size")
                batch = t.shape[0]
            feeds[spec.name] = t.data
        n = batch if batch is not None else 1
        if self.batchable and n > self.max_batch:
            raise RequestError("invalid", f"model {self.name}: batch size {n} is over its max_batch {self.max_batch}")
        return feeds, n

    def _check_shape(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        where = f"model {self.name}: input {spec.name!r}"
        if len(shape) != len(spec.shape):
            raise RequestError(
                "invalid", f"{where} has shape {list(spec.shape)} (-1: any), the request sent {list(shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if want >= 0 and want != got:
                raise RequestError(
                    "invalid", f"{where} has shape {list(spec.shape)} (-1: any), the request sent {list(shape)}"
                )
            if got == 0:
                raise RequestError("invalid", f"{where}: dimension {axis} of {list(shape)} is 0")
            if spec.profile and axis > 0 and want < 0:
                lo, hi = spec.profile["min"][axis], spec.profile["max"][axis]
                if not lo <= got <= hi:
                    raise RequestError("invalid", f"{where}: dimension {axis} is {got}, the model takes {lo} to {hi}")

    async def _infer_tensors(self, req: InferRequest, deadline: float) -> list[Tensor]:
        feeds, n = self.check_inputs(req.inputs)
        outputs = await self.batcher.submit(feeds, n, self._timeout(deadline))
        wanted = req.outputs if req.outputs is not None else [s.name for s in self.outputs]
        result = []
        for name in wanted:
            if name not in outputs:
                raise RequestError(
                    "invalid",
                    f"model {self.name}: no output {name!r}; its outputs are {[s.name for s in self.outputs]}",
                )
            arr = outputs[name]
            result.append(Tensor(name, datatype_of(arr.dtype), tuple(arr.shape), arr))
        return result

    async def _infer_images(self, req: InferRequest, deadline: float) -> list[Tensor]:
        if self.image_input is None:
            raise RequestError(
                "invalid",
                f"model {self.name} takes raw tensors only (its inputs: {[s.name for s in self.inputs]}); "
                f"the {IMAGE_INPUT!r} input needs a bundle with one image input",
            )
        if len(req.inputs) != 1 or req.inputs[0].datatype != "BYTES":
            raise RequestError("invalid", f"model {self.name}: input {IMAGE_INPUT!r} must be the only input, BYTES")
        if req.outputs is not None and req.outputs != [RESULTS_OUTPUT]:
            raise RequestError(
                "invalid", f"model {self.name}: with input {IMAGE_INPUT!r} the output is {RESULTS_OUTPUT!r}"
            )
        encoded = list(req.inputs[0].data.reshape(-1))
        if not encoded:
            raise RequestError("invalid", f"model {self.name}: input {IMAGE_INPUT!r} holds no image")
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(None, self._prepare_images, encoded)
        timeout = self._timeout(deadline)
        outs = await asyncio.gather(*(self.batcher.submit({self.image_input.name: x}, 1, timeout) for x, _ in prepared))
        texts = await loop.run_in_executor(None, self._decode_results, outs, [m for _, m in prepared])
        arr = np.empty(len(texts), dtype=object)
        arr[:] = texts
        return [Tensor(RESULTS_OUTPUT, "BYTES", (len(texts),), arr)]

    def _prepare_images(self, encoded: list[Any]) -> list[tuple[np.ndarray, Any]]:
        import cv2

        from edge.preprocess import network_size, preprocess, to_bgr

        spec = self.image_input
        assert spec is not None
        pre = self.manifest.preprocess
        out = []
        for i, data in enumerate(encoded):
            buf = np.frombuffer(bytes(data), dtype=np.uint8)
            image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
            if image is None:
                raise RequestError(
                    "invalid", f"model {self.name}: {IMAGE_INPUT}[{i}] is not a readable image; send JPEG or PNG bytes"
                )
            bgr = to_bgr(image, f"{IMAGE_INPUT}[{i}]")
            h, w = network_size(pre, spec.shape, bgr.shape[:2], spec.profile)  # sized into the profile
            shape = list(spec.shape)
            hw_axes = (2, 3) if pre.layout == "nchw" else (1, 2)
            shape[hw_axes[0]], shape[hw_axes[1]] = h, w
            shape[0] = 1
            tensor, meta = preprocess(bgr, pre, tuple(shape))
            out.append((tensor, meta))
        return out

    def _decode_results(self, outs: list[dict[str, np.ndarray]], metas: list[Any]) -> list[bytes]:
        from edge.decoders import decode
        from edge.results import result_json

        texts = []
        for arrays, meta in zip(outs, metas):
            (result,) = decode(arrays, self.manifest.postprocess, [meta])
            texts.append(json.dumps(result_json(result)).encode())
        return texts
