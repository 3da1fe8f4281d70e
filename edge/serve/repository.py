"""The model repository: what is on disk, what is loaded, and hot reload.

Layouts (as Triton's): ``PATH/NAME/VERSION/`` with a bundle in each numbered version directory and an
optional ``PATH/NAME/config.yaml`` (:mod:`edge.serve.modelconfig`); ``PATH/NAME/`` being a bundle itself
is version 1; ``PATH`` being one bundle serves it as one model named after the directory (without a
``.bundle`` suffix). The highest version on disk is served.

Reload: a new version directory, or a bundle (or config.yaml) replaced in place, is noticed by
:meth:`Repository.poll` (the server calls it every ``poll`` seconds) or by an explicit load. The new
version is loaded and warmed up beside the old one, then swapped in with one assignment on the event
loop: requests that already picked the old version finish on it, new ones go to the new one, and the
old one is retired (drained, closed) once its last request is answered. A version that fails to load
leaves the old one serving; its error shows in :meth:`Repository.index`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, EdgeError, first_line
from edge.runtime.model import Model
from edge.serve.metrics import ServeMetrics
from edge.serve.modelconfig import ModelConfig
from edge.serve.options import Limits
from edge.serve.served import ServedModel
from edge.serve.status import RequestError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class OnDisk:
    """The version of one model that would be served, as found on disk."""

    name: str
    version: str
    path: Path
    config_path: Path | None
    fingerprint: tuple[Any, ...]


def _stat_key(path: Path) -> tuple[Any, ...]:
    try:
        st = path.stat()
    except OSError:
        return (None,)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _tree_key(path: Path) -> tuple[Any, ...]:
    """Name, inode, mtime and size of every file in a bundle directory: a file still being written (or
    replaced in place) changes the key, so a version that failed half-copied is retried once the copy ends."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return (None,)
    return (_stat_key(path), *((e.name, *_stat_key(Path(e.path))) for e in entries))


def model_name_of_bundle(path: Path) -> str:
    name = path.resolve().name
    return name[: -len(".bundle")] if name.endswith(".bundle") and len(name) > 7 else name


def _versions(folder: Path) -> list[Path]:
    """``folder``'s VERSION/ subdirectories that hold a bundle."""
    return [v for v in folder.iterdir() if v.is_dir() and v.name.isdigit() and (v / MANIFEST).is_file()]


def _newest(name: str, folder: Path, versions: list[Path]) -> OnDisk:
    config_path = folder / CONFIG
    latest = max(versions, key=lambda v: int(v.name))
    return OnDisk(
        name, str(int(latest.name)), latest, config_path, (latest.name, _tree_key(latest), _stat_key(config_path))
    )


def scan(root: Path) -> dict[str, OnDisk | str]:
    """Every model in ``root``: what to serve, or why nothing can be (a string).

    ``root`` is a repository (``NAME/VERSION/``), or one model's folder of it (``VERSION/`` and its
    ``config.yaml``: served under the folder's name), or one bundle (a version folder ``NAME/2`` is model
    NAME, version 2, with NAME's ``config.yaml``)."""
    if (root / MANIFEST).is_file():
        resolved = root.resolve()
        if resolved.name.isdigit() and resolved.parent.name:
            name, config_path = resolved.parent.name, resolved.parent / CONFIG
            key = (_tree_key(root), _stat_key(config_path))
            return {name: OnDisk(name, str(int(resolved.name)), root, config_path, key)}
        name = model_name_of_bundle(root)
        return {name: OnDisk(name, "1", root, None, _tree_key(root))}
    if not root.is_dir():
        if root.suffix.lower() == ".onnx" and root.is_file():
            raise ConfigError(
                f"{root}: an ONNX model, not a bundle; build one first: `edge build {root} -o {root.stem}.bundle` "
                f"(add --target, --precision, --task/--decoder as docs/build.md shows), then serve {root.stem}.bundle"
            )
        why = "a file, not a directory" if root.exists() else "no such directory"
        raise ConfigError(f"{root}: not a model repository or a bundle directory ({why})")
    versions = _versions(root)
    if versions:  # one model's folder
        name = root.resolve().name
        return {name: _newest(name, root, versions)}
    found: dict[str, OnDisk | str] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if (entry / MANIFEST).is_file():
            config_path = entry / CONFIG
            found[entry.name] = OnDisk(entry.name, "1", entry, config_path, (_tree_key(entry), _stat_key(config_path)))
            continue
        versions = _versions(entry)
        if not versions:
            found[entry.name] = f"{entry}: no version directory with a bundle (expected {entry}/1/{MANIFEST})"
            continue
        found[entry.name] = _newest(entry.name, entry, versions)
    return found


Loader = Callable[[Path, ModelConfig], Sequence[Model]]


def default_loader(facts: Any = None) -> Loader:
    """Load ``config.instances`` instances of a bundle, placed round-robin on ``config.gpus``, warmed up."""

    def load_instances(path: Path, config: ModelConfig) -> list[Model]:
        from edge.runtime import load

        models: list[Model] = []
        try:
            for i in range(config.instances):
                gpu = config.gpus[i % len(config.gpus)] if config.gpus else None
                model = load(path, config.backend, warmup=config.warmup, facts=facts, gpu=gpu)
                models.append(model)
                warm_batches(model, config)
        except BaseException:
            for m in models:
                m.close()
            raise
        return models

    return load_instances


def warm_batches(model: Model, config: ModelConfig) -> None:
    """TensorRT and TensorRT-RTX: also run the batch sizes the batcher will form (max_batch, preferred sizes), so
    the first batched request does not pay for a shape's first run (RTX compiles kernels per shape at run
    time). ONNX Runtime's CPU and CUDA providers need no such warm-up: their first run at a size costs little."""
    if config.warmup == 0 or not model.backend_name.startswith("tensorrt"):
        return
    spec = model.inputs[0]
    if not spec.shape or spec.shape[0] >= 0:
        return
    top = min(config.max_batch, model.max_batch)
    for batch in sorted({top, *(b for b in config.preferred_batch if b <= top)} - {1}):
        model.infer_raw(model.example_inputs(batch=batch))


@dataclass
class Entry:
    """One model name: what serves now, and the last load's outcome."""

    name: str
    served: ServedModel | None = None
    disk: OnDisk | None = None  # what `served` was loaded from
    state: str = "UNAVAILABLE"  # of the newest attempt: READY, LOADING, UNAVAILABLE, UNLOADING
    version: str = ""
    reason: str = ""
    unloaded: bool = False  # explicitly unloaded: polls leave it alone until an explicit load
    failed: tuple[Any, ...] | None = None  # fingerprint of files that failed to load (not retried by polls)


class Repository:
    def __init__(
        self,
        root: Path,
        metrics: ServeMetrics,
        limits: Limits,
        loader: Loader | None = None,
    ) -> None:
        self.root = root
        self.metrics = metrics
        self.limits = limits
        self.loader = loader or default_loader()
        self.entries: dict[str, Entry] = {}
        self.loading = False  # the first load of every model is under way
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    # ---- lookups -------------------------------------------------------------------------------------
    def get(self, name: str, version: str = "") -> ServedModel:
        entry = self.entries.get(name)
        if entry is None:
            if self.loading:
                raise RequestError("unavailable", "the server is still loading its models; retry when it is ready")
            raise RequestError("not_found", f"no model named {name!r}; GET /v2/repository/index lists the models")
        served = entry.served
        if served is None:
            why = f": {entry.reason}" if entry.reason else ""
            raise RequestError("unavailable", f"model {name!r} is not ready ({entry.state.lower()}{why})")
        if version and version != served.version:
            raise RequestError(
                "not_found", f"model {name!r} version {version} is not served (version {served.version} is)"
            )
        return served

    def ready(self) -> bool:
        return (
            not self.loading
            and bool(self.entries)
            and all(e.served is not None or e.unloaded for e in self.entries.values())
        )

    def index(self) -> list[dict[str, str]]:
        """Triton's repository index: the serving version READY, and the newest attempt when it is not."""
        rows = []
        for name in sorted(self.entries):
            e = self.entries[name]
            if e.served is not None:
                rows.append({"name": name, "version": e.served.version, "state": "READY", "reason": ""})
            if e.state != "READY":
                rows.append({"name": name, "version": e.version, "state": e.state, "reason": e.reason})
        return rows

    def pending(self) -> dict[tuple[str, str], int]:
        return {(e.name, e.served.version): e.served.batcher.queued for e in self.entries.values() if e.served}

    # ---- loading -------------------------------------------------------------------------------------
    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load_all(self) -> list[str]:
        """Load every model found; the errors, one line each (an empty list when all are ready)."""
        errors = []
        self.loading = True
        try:
            for name, found in scan(self.root).items():
                ok = await self._load(name, found)
                if not ok:
                    errors.append(f"model {name}: {self.entries[name].reason}")
        finally:
            self.loading = False
        if not self.entries:
            errors.append(f"{self.root}: no models found (expected NAME/VERSION/ bundle directories or a bundle)")
        return errors

    async def load(self, name: str) -> None:
        """Load (or reload) NAME's newest version from disk; a RequestError says why it failed."""
        found = scan(self.root).get(name)
        if found is None:
            raise RequestError("not_found", f"no model named {name!r} in {self.root}")
        if not await self._load(name, found, explicit=True):
            raise RequestError("invalid", f"model {name!r}: load failed: {self.entries[name].reason}")

    async def _load(self, name: str, found: OnDisk | str, explicit: bool = False) -> bool:
        async with self._lock(name):
            entry = self.entries.setdefault(name, Entry(name))
            if explicit:
                entry.unloaded = False
            if isinstance(found, str):
                entry.state, entry.reason, entry.version = "UNAVAILABLE", found, ""
                return False
            entry.state, entry.version, entry.reason = "LOADING", found.version, ""
            log.info("model %s: loading version %s from %s", name, found.version, found.path)
            try:
                config = ModelConfig.read(found.config_path) if found.config_path else ModelConfig()
                loop = asyncio.get_running_loop()
                instances = await loop.run_in_executor(None, self.loader, found.path, config)
                try:
                    new = ServedModel(name, found.version, found.path, config, instances, self.metrics, self.limits)
                except BaseException:
                    for model in instances:
                        model.close()
                    raise
            except (EdgeError, OSError, ValueError, RuntimeError) as exc:
                entry.state, entry.reason = "UNAVAILABLE", first_line(exc, type(exc).__name__)
                log.error("model %s version %s failed to load: %s", name, found.version, entry.reason)
                entry.failed = found.fingerprint
                return False
            old, entry.served, entry.disk = entry.served, new, found  # the swap: one step on the event loop
            entry.state, entry.reason, entry.failed = "READY", "", None
            log.info(
                "model %s: version %s ready (%s, %d instance(s))", name, new.version, new.backend_name, len(instances)
            )
            if old is not None:
                self._retire(old)
            return True

    def _retire(self, old: ServedModel) -> None:
        task = asyncio.ensure_future(old.retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        """Stop serving NAME: new requests are refused, the ones already accepted are answered first."""
        entry = self.entries.get(name)
        if entry is None:
            raise RequestError("not_found", f"no model named {name!r}")
        async with self._lock(name):
            entry.unloaded = True
            old, entry.served = entry.served, None
            entry.state, entry.reason = "UNLOADING", "unloading"
            if old is not None:
                await old.retire()
            entry.state, entry.reason = "UNAVAILABLE", "unloaded"

    async def poll(self) -> None:
        """Reload what changed on disk: new versions, replaced bundles or configs, new and removed models."""
        try:
            found = scan(self.root)
        except EdgeError as exc:
            log.warning("repository scan failed: %s", exc)
            return
        for name, now in found.items():
            entry = self.entries.get(name)
            if entry is not None and entry.unloaded:
                continue
            if entry is None:
                await self._load(name, now)
                continue
            if isinstance(now, str):
                continue  # a version directory being written; keep what serves
            if entry.disk is not None and entry.disk.fingerprint == now.fingerprint and entry.served is not None:
                continue
            if entry.failed == now.fingerprint:
                continue  # the same broken files: do not retry every poll
            await self._load(name, now)
        for name in list(self.entries):
            if name not in found and self.entries[name].served is not None:
                log.info("model %s: gone from %s, unloading", name, self.root)
                await self.unload(name)
                del self.entries[name]  # forgotten: the same name copied back later is a new model

    async def close(self) -> None:
        """Drain and close every model (after the listeners stopped accepting)."""
        for entry in self.entries.values():
            old, entry.served = entry.served, None
            if old is not None:
                await old.retire()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
