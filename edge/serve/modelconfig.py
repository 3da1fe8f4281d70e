"""``PATH/NAME/config.yaml``: how one model of the repository is served.

    max_batch: 8                 # largest batch the dynamic batcher forms (default: 8, capped by the model)
    preferred_batch: [4, 8]      # sizes worth waiting for (Triton's preferred_batch_size)
    max_queue_delay_us: 500      # how long the oldest request may wait for a fuller batch (0: never wait)
    dynamic_batching: true       # false: every request runs alone
    instances: 2                 # parallel backend instances (each its own session / execution context)
    gpus: [0, 1]                 # devices the instances go on, round-robin (default: the backend's device 0)
    backend: onnxruntime-cpu     # pin a backend (edge infer --backend), default: the best for this machine
    warmup: 2                    # inferences per instance before the model is ready
    max_queue: 256               # requests waiting beyond this get 429 / RESOURCE_EXHAUSTED (default: the server's)

Unknown keys are errors, read once when the model is (re)loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from edge.configkit import Reader
from edge.errors import ConfigError

BACKENDS = ("auto", "tensorrt", "tensorrt-rtx", "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu")
DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class ModelConfig:
    max_batch: int = DEFAULT_MAX_BATCH
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    dynamic_batching: bool = True
    instances: int = 1
    gpus: tuple[int, ...] = ()
    backend: str | None = None
    warmup: int = 2
    max_queue: int | None = None

    @classmethod
    def from_dict(cls, data: object, where: str) -> ModelConfig:
        r = Reader(data, where)
        max_batch = r.int("max_batch", DEFAULT_MAX_BATCH, min=1, max=4096)
        preferred = r.list("preferred_batch", [])
        delay = r.int("max_queue_delay_us", 0, min=0, max=10_000_000)
        dynamic = r.bool("dynamic_batching", True)
        instances = r.int("instances", 1, min=1, max=64)
        gpus = r.list("gpus", [])
        backend = r.str("backend", "auto", BACKENDS)
        warmup = r.int("warmup", 2, min=0, max=1000)
        max_queue = r.int("max_queue", None, min=1, max=1_000_000)
        r.finish()
        for i, value in enumerate(preferred):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_batch:
                raise ConfigError(
                    f"{r.where('preferred_batch')}[{i}]: expected a batch size from 1 to max_batch ({max_batch}), "
                    f"got {value!r}"
                )
        for i, value in enumerate(gpus):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{r.where('gpus')}[{i}]: expected a GPU index (0, 1, ...), got {value!r}")
        return cls(
            max_batch=max_batch,
            preferred_batch=tuple(sorted(set(preferred))),
            max_queue_delay_us=delay,
            dynamic_batching=dynamic,
            instances=instances,
            gpus=tuple(gpus),
            backend=None if backend == "auto" else backend,
            warmup=warmup,
            max_queue=max_queue,
        )

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        """The model's config.yaml (defaults when the file is absent)."""
        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{at}; fix the file") from None
        try:
            return cls.from_dict(data, "")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
