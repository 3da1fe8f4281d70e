"""The bundle manifest (``manifest.json``): schema, reading, writing, file checks.

Schema version 1. The builder writes it (``builders``), the runtime reads it (``edge.runtime``); this
module is the only place that knows its layout. Field by field, in the order a reader meets them:

- ``schema_version``: 1.
- ``model``: ``name``, ``source`` (file name of the ONNX given to the builder) and ``source_sha256``.
- ``builder``: ``edge_version``, ``created`` (UTC ISO-8601), ``command`` (the build command line),
  ``simplifier`` (e.g. ``"onnxslim 0.1.98"`` or ``null``), ``libraries`` (name -> version).
- ``precision``: what the ONNX and plans compute in (``fp32``/``fp16``/``int8``/``fp8``).
- ``inputs`` / ``outputs``: ``name``, ``dtype`` (numpy name), ``shape`` (``-1`` for a dynamic axis),
  and for inputs ``profile`` (``min``/``opt``/``max`` shapes) when the input has dynamic axes.
- ``preprocess`` / ``postprocess``: :mod:`edge.spec`.
- ``calibration``: ``method``, ``images``, ``data_sha256``, ``source`` or ``null``.
- ``accuracy``: the gate's result vs the FP32 reference, or ``null``.
- ``artifacts``: one per runnable file (see :class:`Artifact`).
- ``files``: every file of the bundle but the manifest: name -> ``{"sha256", "size"}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.configkit import Reader
from edge.errors import BundleError, ConfigError
from edge.fsutil import atomic_write
from edge.spec import PostprocessSpec, PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
BACKENDS = ("onnxruntime", "tensorrt", "tensorrt-rtx")
PRECISIONS = ("fp32", "fp16", "int8", "fp8", "int8-dynamic")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    profile: Mapping[str, tuple[int, ...]] | None = None  # {"min": ..., "opt": ..., "max": ...}

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.profile is not None:
            d["profile"] = {k: list(v) for k, v in self.profile.items()}
        return d

    @classmethod
    def from_dict(cls, data: object, path: str) -> TensorSpec:
        r = Reader(data, path)
        shape = r.list("shape")
        profile = r.raw("profile", None)
        if profile is not None:
            pr = Reader(profile, r.where("profile"))
            profile = {k: tuple(int(x) for x in pr.list(k)) for k in ("min", "opt", "max")}
            pr.finish()
        spec = cls(r.str("name"), r.str("dtype"), tuple(int(x) for x in shape), profile)
        r.finish()
        return spec


@dataclass(frozen=True)
class Artifact:
    """One runnable file: the ONNX (``backend="onnxruntime"``, ``targets=("any",)``) or a plan.

    A plan records what it can run on: ``targets`` (target ids), ``compute_capabilities``
    (``"8.6"``), the TensorRT flavour (``backend``) and ``tensorrt_version`` it was built with,
    ``cuda_version``, ``l4t_version`` (Jetson plans), ``dla_core``, and ``hardware_compatibility``
    / ``version_compatible`` when the classic portability options were used.
    """

    file: str
    backend: str
    precision: str
    targets: tuple[str, ...]
    sha256: str
    size: int
    compute_capabilities: tuple[str, ...] = ()
    tensorrt_version: str | None = None
    cuda_version: str | None = None
    l4t_version: str | None = None
    dla_core: int | None = None
    hardware_compatibility: str | None = None
    version_compatible: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "backend": self.backend,
            "precision": self.precision,
            "targets": list(self.targets),
            "compute_capabilities": list(self.compute_capabilities),
            "tensorrt_version": self.tensorrt_version,
            "cuda_version": self.cuda_version,
            "l4t_version": self.l4t_version,
            "dla_core": self.dla_core,
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible,
            "sha256": self.sha256,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, data: object, path: str) -> Artifact:
        r = Reader(data, path)
        art = cls(
            file=r.str("file"),
            backend=r.str("backend", choices=BACKENDS),
            precision=r.str("precision", choices=PRECISIONS),
            targets=tuple(str(t) for t in r.list("targets")),
            sha256=r.str("sha256"),
            size=r.int("size", min=0),
            compute_capabilities=tuple(str(c) for c in r.list("compute_capabilities", [])),
            tensorrt_version=r.str("tensorrt_version", None),
            cuda_version=r.str("cuda_version", None),
            l4t_version=r.str("l4t_version", None),
            dla_core=r.int("dla_core", None, min=0),
            hardware_compatibility=r.str("hardware_compatibility", None),
            version_compatible=r.bool("version_compatible", False),
        )
        r.finish()
        return art


@dataclass
class Manifest:
    name: str
    source: str
    source_sha256: str
    precision: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocess: PreprocessSpec
    postprocess: PostprocessSpec
    artifacts: list[Artifact]
    builder: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model": {"name": self.name, "source": self.source, "source_sha256": self.source_sha256},
            "builder": self.builder,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "preprocess": self.preprocess.to_dict(),
            "postprocess": self.postprocess.to_dict(),
            "calibration": self.calibration,
            "accuracy": self.accuracy,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = MANIFEST) -> Manifest:
        try:
            r = Reader(data, "")
            version = r.int("schema_version")
            if version != SCHEMA_VERSION:
                raise BundleError(
                    f"{where}: schema_version {version} is not supported by this runtime (it reads "
                    f"{SCHEMA_VERSION}); rebuild the bundle with this kit's `edge build` or upgrade the runtime"
                )
            m = r.section("model")
            manifest = cls(
                name=m.str("name"),
                source=m.str("source"),
                source_sha256=m.str("source_sha256"),
                precision=r.str("precision", choices=PRECISIONS),
                inputs=[TensorSpec.from_dict(t, f"inputs[{i}]") for i, t in enumerate(r.list("inputs"))],
                outputs=[TensorSpec.from_dict(t, f"outputs[{i}]") for i, t in enumerate(r.list("outputs"))],
                preprocess=PreprocessSpec.from_dict(r.raw("preprocess")),
                postprocess=PostprocessSpec.from_dict(r.raw("postprocess")),
                artifacts=[Artifact.from_dict(a, f"artifacts[{i}]") for i, a in enumerate(r.list("artifacts"))],
                builder=dict(r.raw("builder", {})),
                calibration=r.raw("calibration", None),
                accuracy=r.raw("accuracy", None),
                files=dict(r.raw("files", {})),
            )
            m.finish()
            r.finish()
        except ConfigError as exc:
            raise BundleError(f"{where}: invalid manifest: {exc}; rebuild the bundle with `edge build`") from None
        return manifest

    def write(self, bundle_dir: str | os.PathLike[str]) -> Path:
        """Write ``manifest.json`` into a bundle directory atomically (temp file, then rename)."""
        out = Path(bundle_dir) / MANIFEST
        atomic_write(out, json.dumps(self.to_dict(), indent=2) + "\n")
        return out


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``BUNDLE/manifest.json`` (schema only; see :func:`verify_file`)."""
    bundle = Path(bundle_dir)
    if bundle.is_file() and bundle.suffix.lower() == ".onnx":
        out = bundle.with_suffix(".bundle")
        raise BundleError(
            f"{bundle}: an ONNX model, not a bundle; build one first: `edge build {bundle} -o {out}` (add --target, "
            f"--precision, --task/--decoder as docs/build.md shows), then use {out}"
        )
    if bundle.is_file():  # e.g. `edge infer photo.jpg photo.jpg`: never suggest `-o photo.jpg`
        raise BundleError(
            f"{bundle}: a file, not a bundle directory (a bundle is the folder `edge build MODEL.onnx -o NAME.bundle` "
            "writes; commands take it first: `edge infer NAME.bundle IMAGE...`)"
        )
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: not a bundle directory; make one with `edge build MODEL.onnx -o {bundle}`")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path}: manifest.json is missing; this is not a complete bundle, rebuild it with `edge build`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(
            f"{path}: manifest.json is not valid JSON ({exc}); rebuild the bundle with `edge build`"
        ) from None
    return Manifest.from_dict(data, str(path))


def verify_file(bundle_dir: str | os.PathLike[str], name: str, expected_sha256: str) -> Path:
    """The path of a bundle file whose sha256 matches the manifest, else a :class:`BundleError`."""
    path = Path(bundle_dir) / name
    if not path.is_file():
        raise BundleError(f"{path}: listed in manifest.json but missing; copy the whole bundle or rebuild it")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise BundleError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest's {expected_sha256[:12]}...; "
            "the file is corrupt or was replaced: copy the bundle again or rebuild it"
        )
    return path
