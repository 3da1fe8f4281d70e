"""``build(options) -> bundle path``: the whole builder, stage by stage.

1. plan: resolve targets, check precision and engine flags, check which plans this machine can build
   and that the output may be written; all before any heavy work.
2. load (``onnx_load``) -> simplify -> shapes (``--shapes`` fixes inputs; profiles for dynamic ones)
3. precision: fp16 conversion, or int8/fp8 Q/DQ calibrated on ``--calib`` with the bundle's preprocess
4. accuracy gate (``--max-drop``) against the FP32 model
5. engines: one TensorRT-RTX plan for all RTX targets, one classic plan per Jetson/datacenter target
6. bundle: model.onnx, plans, labels.txt, manifest.json, written atomically (:mod:`builders.bundle`)
"""

from __future__ import annotations

import datetime
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import onnx

from builders import engine_rtx, engine_trt, onnx_stages
from builders.bundle import LABELS_FILE, MODEL_FILE, BundleWriter, check_output, plan_file_name
from builders.engine_common import EngineRequest
from builders.options import BuildOptions
from builders.targets import EnginePlan, plan_engines
from edge import __version__
from edge.errors import ConfigError
from edge.manifest import Artifact, Manifest, TensorSpec, sha256_file

log = logging.getLogger(__name__)

COLLECT_ABOVE_BYTES = 16 << 20  # model.onnx size from which to collect garbage before the engine builds


def build(options: BuildOptions) -> Path:
    """Build the bundle described by ``options``; its path. Nothing is left at the output on failure."""
    plan = plan_engines(options)
    check_output(options.output, options.force)
    if options.calib is not None or options.val is not None:
        from builders.calibration import check_source  # imports OpenCV: only when images are given

        for data in (options.calib, options.val):
            if data is not None:
                check_source(data)  # an empty or wrong --calib/--val folder fails before the model is loaded
    labels = read_labels(options.labels) if options.labels is not None else ()
    postprocess = onnx_stages.postprocess_spec(options, labels)
    with BundleWriter(options.output, force=options.force) as bundle:
        prepared = onnx_stages.prepare(options, plan.precision, postprocess)
        model_path = bundle.path(MODEL_FILE)
        size = save_onnx(prepared.model, model_path, plan.precision)
        # The engines are built from that file: free the in-memory model (and, for a big one, the
        # simplifier's graph copies held in reference cycles: a full collection costs ~40 ms) before
        # TensorRT allocates its own, or TensorRT's allocations set the peak (light ResNet-50: 647 -> 580 MB).
        prepared.model.Clear()
        if size >= COLLECT_ABOVE_BYTES:
            gc.collect()
        artifacts = [bundle.artifact(MODEL_FILE, backend="onnxruntime", precision=plan.precision, targets=("any",))]
        artifacts += build_engines(options, plan, model_path, prepared.profiles, bundle)
        if labels:
            bundle.path(LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
        manifest = Manifest(
            name=options.model_name,
            source=options.model.name,
            source_sha256=sha256_file(options.model),
            precision=plan.precision,
            inputs=[with_profile(t, prepared.profiles) for t in prepared.inputs],
            outputs=prepared.outputs,
            preprocess=prepared.preprocess,
            postprocess=postprocess,
            artifacts=artifacts,
            builder=builder_info(options, plan, prepared.simplifier),
            calibration=prepared.calibration,
            accuracy=prepared.accuracy,
        )
        log.info("hashing the bundle's files and writing %s", "manifest.json")
        return bundle.commit(manifest)


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels {path}: cannot read it as UTF-8 text ({exc})") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise ConfigError(f"--labels {path}: the file has no labels (expected one label per line)")
    return labels


def save_onnx(model: onnx.ModelProto, path: Path, precision: str = "") -> int:
    """Write the bundle's ONNX; its size in bytes. Over 2 GiB (ONNX's limit) the weights go to
    ``model.onnx.data`` beside it.

    Serialised once: protobuf's ``ByteSize`` costs as much as serialising (~0.1 s per 50 MB).
    """
    try:
        data = model.SerializeToString()
    except ValueError:  # protobuf: "Message onnx.ModelProto exceeds maximum protobuf size of 2GB"
        log.info("writing %s (%s, over 2 GiB: weights to %s.data)", path.name, precision, path.name)
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
        return path.stat().st_size + path.with_name(path.name + ".data").stat().st_size
    log.info("writing %s (%s, %.1f MB)", path.name, precision, len(data) / 1e6)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def with_profile(spec: TensorSpec, profiles: dict[str, dict[str, tuple[int, ...]]]) -> TensorSpec:
    profile = profiles.get(spec.name)
    return TensorSpec(spec.name, spec.dtype, spec.shape, profile) if profile else spec


def build_engines(
    options: BuildOptions,
    plan: EnginePlan,
    model_path: Path,
    profiles: dict[str, dict[str, tuple[int, ...]]],
    bundle: BundleWriter,
) -> list[Artifact]:
    """Build the plans ``plan`` lists into the bundle; their artifacts."""
    artifacts: list[Artifact] = []
    if plan.rtx:
        ids = tuple(t.id for t in plan.rtx)
        name = plan_file_name(ids)
        request = EngineRequest(
            onnx_path=model_path,
            plan_path=bundle.path(name),
            profiles=profiles,
            workspace_mib=options.workspace_mib,
            optimization_level=options.optimization_level,
            label="+".join(ids),
            source_name=options.model.name,
        )
        ccs = [t.compute_capability for t in plan.rtx if t.compute_capability]
        rtx = engine_rtx.build_rtx(request, ccs)
        artifacts.append(
            bundle.artifact(
                name,
                backend="tensorrt-rtx",
                precision=plan.precision,
                targets=ids,
                compute_capabilities=rtx.compute_capabilities,
                tensorrt_version=rtx.tensorrt_version,
                cuda_version=rtx_cuda_version(),
            )
        )
    for target in plan.classic:
        name = plan_file_name((target.id,))
        workspace = options.workspace_mib or (target.default_workspace_mib or None)
        request = EngineRequest(
            onnx_path=model_path,
            plan_path=bundle.path(name),
            profiles=profiles,
            workspace_mib=workspace,
            optimization_level=options.optimization_level,
            label=target.id,
            source_name=options.model.name,
        )
        classic_options = engine_trt.ClassicOptions(
            dla_core=options.dla if target.dla_cores > 0 else None,
            timing_cache=options.timing_cache,
            hardware_compatibility=options.hardware_compatibility,
            version_compatible=options.version_compatible,
        )
        built = engine_trt.build_classic(request, classic_options, plan.precision)
        machine = plan.machine
        artifacts.append(
            bundle.artifact(
                name,
                backend="tensorrt",
                precision=plan.precision,
                targets=(target.id,),
                compute_capabilities=(target.compute_capability,) if target.compute_capability else (),
                tensorrt_version=built.tensorrt_version,
                cuda_version=machine.cuda_version if machine else None,
                l4t_version=machine.l4t_version if machine else None,
                dla_core=built.dla_core,
                hardware_compatibility=built.hardware_compatibility,
                version_compatible=built.version_compatible,
            )
        )
    return artifacts


def rtx_cuda_version() -> str | None:
    """The CUDA major version the installed TensorRT-RTX wheel targets (``tensorrt-rtx-cu13`` -> ``"13"``)."""
    from importlib import metadata

    for dist in ("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "tensorrt_rtx_cu13", "tensorrt_rtx_cu12"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return dist[-2:]
    return None


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {"python": ".".join(str(v) for v in sys.version_info[:3])}
    for name in ("onnx", "onnxruntime", "onnxslim", "numpy", "opencv-python-headless"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    # The TensorRT flavours this build used (imported by then); importing one only for its version costs ~0.1 s.
    if "tensorrt_rtx" in sys.modules and (version := engine_rtx.rtx_version()) is not None:
        out["tensorrt-rtx"] = version
    if "tensorrt" in sys.modules and (version := engine_trt.classic_version()) is not None:
        out["tensorrt"] = version
    return out


def builder_info(options: BuildOptions, plan: EnginePlan, simplifier: str | None) -> dict[str, Any]:
    return {
        "edge_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "command": options.command or None,
        "simplifier": simplifier,
        "libraries": library_versions(),
        "targets": [t.id for t in plan.targets],
        "skipped": dict(plan.skipped),
        "notes": list(plan.notes),
    }
