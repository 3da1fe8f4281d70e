"""``edge doctor [BUNDLE]``: is this machine ready, and does every artifact agree with ONNX Runtime on the CPU?

Prints the platform, library versions and CUDA status. With a bundle: every artifact that can run here is
fed the same input (a synthetic photo through the bundle's preprocess spec) and its outputs are compared
with the ONNX on ONNX Runtime's CPU provider (per output: max abs error, max relative error, tolerance by
precision). Artifacts that cannot run here are listed with the reason. Exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# (atol, rtol) by the bundle's precision: outputs pass when |x - ref| <= atol + rtol * |ref| everywhere.
# platforms.Machine fields shown on the ``gpu:`` line (driver, CUDA, JetPack, L4T)
GPU_VERSIONS = ("driver_version", "cuda_version", "jetpack_version", "l4t_version")
TOLERANCES = {"fp32": (1e-3, 1e-3), "fp16": (3e-2, 3e-2), "int8": (0.25, 0.25), "fp8": (0.25, 0.25)}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check this machine and a bundle's artifacts against ONNX Runtime CPU",
        description="Show platform and versions; with a bundle, run every runnable artifact and compare its "
        "outputs with ONNX Runtime on the CPU. Exits 1 when an artifact disagrees beyond tolerance.",
    )
    p.add_argument("bundle", nargs="?", help="bundle directory to check")
    p.add_argument("--atol", type=float, help="absolute tolerance (default by precision)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default by precision)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--gpu",
        metavar="INDEX|UUID",
        help="which GPU on a machine with several: nvidia-smi's index or UUID, as `edge info` lists them (default 0)",
    )
    p.set_defaults(func=run)


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in (
        "edge-kit",
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorrt",
        "tensorrt_cu13",
        "tensorrt_cu12",
        "tensorrt_rtx_cu13",
        "tensorrt_rtx_cu12",
        "cuda-python",
        "cuda-bindings",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def compare(outputs: dict[str, Any], reference: dict[str, Any], atol: float, rtol: float) -> dict[str, Any]:
    """Per output: max abs and max relative error and whether it is within tolerance."""
    import numpy as np

    per: dict[str, Any] = {}
    ok = True
    for name, ref in reference.items():
        got = outputs.get(name)
        if got is None or np.shape(got) != np.shape(ref):
            per[name] = {
                "ok": False,
                "error": f"shape {None if got is None else list(np.shape(got))} != {list(np.shape(ref))}",
            }
            ok = False
            continue
        r = np.asarray(ref, dtype=np.float64)
        g = np.asarray(got, dtype=np.float64)
        diff = np.abs(g - r)
        rel = diff / np.maximum(np.abs(r), 1e-6)
        good = bool(np.all(diff <= atol + rtol * np.abs(r))) if r.size else True
        per[name] = {
            "ok": good,
            "max_abs": float(diff.max()) if diff.size else 0.0,
            "max_rel": float(rel[np.abs(r) > 1e-3].max()) if np.any(np.abs(r) > 1e-3) else 0.0,
        }
        ok = ok and good
    return {"ok": ok, "outputs": per}


def doctor_input(model: Any) -> dict[str, Any]:
    """A synthetic photo (gradients and noise) through the bundle's preprocess, else example inputs."""
    import numpy as np

    from edge.preprocess import preprocess

    pre = model.manifest.preprocess
    spec = next((t for t in model.inputs if t.name == pre.input), None)
    if spec is None or len(model.inputs) != 1:
        return dict(model.example_inputs(1))
    shape = model.example_shape(spec, 1)
    h, w = (shape[2], shape[3]) if pre.layout == "nchw" else (shape[1], shape[2])
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], axis=2)
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    tensor, _ = preprocess(img, pre, shape)
    return {spec.name: tensor}


def check_bundle(path: str, atol: float | None, rtol: float | None, facts: Any) -> dict[str, Any]:
    from edge.runtime import load, make_backend
    from edge.runtime.bundle import Bundle
    from edge.runtime.select import Choice, describe_artifact, plan_problem

    bundle = Bundle.open(path)
    m = bundle.manifest
    a_tol, r_tol = TOLERANCES.get(m.precision, TOLERANCES["fp32"])
    a_tol, r_tol = atol if atol is not None else a_tol, rtol if rtol is not None else r_tol
    report: dict[str, Any] = {"bundle": path, "precision": m.precision, "atol": a_tol, "rtol": r_tol, "artifacts": []}
    with load(bundle, "onnxruntime-cpu", warmup=0, facts=facts) as ref_model:
        feeds = doctor_input(ref_model)
        reference = ref_model.infer_raw(feeds)
        onnx_art = ref_model.artifact
    report["input"] = {k: list(v.shape) for k, v in feeds.items()}
    candidates: list[tuple[Any, Choice | None, str | None]] = []
    for art in m.artifacts:
        if art.backend == "onnxruntime":
            candidates.append((art, None, "the reference all others are compared with" if art is onnx_art else None))
            gpu = [p for p in facts.ort_providers if p == "CUDAExecutionProvider"]
            if gpu and facts.cuda:
                candidates.append((art, Choice(art, "onnxruntime", (*gpu, "CPUExecutionProvider")), None))
            else:
                why = facts.cuda_reason if not facts.cuda else "onnxruntime has no CUDA provider here"
                report["artifacts"].append(
                    {"file": art.file, "backend": "onnxruntime-cuda", "status": "skipped", "reason": why}
                )
            continue
        why = plan_problem(art, facts)
        if why:
            report["artifacts"].append(
                {
                    "file": art.file,
                    "backend": art.backend,
                    "status": "skipped",
                    "reason": why,
                    "describe": describe_artifact(art),
                }
            )
        else:
            candidates.append((art, Choice(art, art.backend), None))
    for art, choice, note in candidates:
        if choice is None:
            report["artifacts"].insert(
                0, {"file": art.file, "backend": "onnxruntime-cpu", "status": "reference", "reason": note}
            )
            continue
        entry: dict[str, Any] = {"file": art.file, "backend": choice.label}
        # progress: a TensorRT-RTX plan JIT-compiles its kernels on first load (can take a while)
        print(f"checking {art.file} on {choice.label} ...", file=sys.stderr, flush=True)
        try:
            # pinned: a CUDA provider that does not start is a failure, not a CPU run compared with the CPU
            backend = make_backend(bundle, choice, state_dir=_state_dir(), pinned=choice.label, device=facts.device)
            with backend:
                outputs = backend.infer(feeds)
            entry.update(compare(outputs, reference, a_tol, r_tol))
            entry["status"] = "ok" if entry["ok"] else "mismatch"
        except Exception as exc:  # report every artifact, even one that fails to load
            entry.update({"status": "failed", "ok": False, "reason": str(exc)})
        report["artifacts"].append(entry)
    report["ok"] = all(a.get("ok", True) for a in report["artifacts"])
    report["compared"] = sum(1 for a in report["artifacts"] if a["status"] not in ("reference", "skipped"))
    report["skipped"] = sum(1 for a in report["artifacts"] if a["status"] == "skipped")
    return report


def _state_dir() -> Any:
    from edge.runtime import default_state_dir

    return default_state_dir()


def format_text(machine: dict[str, Any], report: dict[str, Any] | None) -> str:
    lines = [
        *machine.get("warnings", []),
        f"platform: {machine['target']} ({machine['reason']})",
        f"machine: {machine['facts']}",
    ]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()))
    gpu = machine.get("gpu") or {}
    if gpu.get("name") or gpu.get("compute_capability"):
        bits = [f"{gpu.get('name') or '?'} (sm {gpu.get('compute_capability') or '?'})"]
        bits += [f"{k.replace('_version', '')} {gpu[k]}" for k in GPU_VERSIONS if gpu.get(k)]
        lines.append("gpu: " + ", ".join(bits))
    else:
        lines.append("gpu: none detected")
    lines.append("cuda: " + ("available" if machine["cuda"] else f"not available ({machine['cuda_reason']})"))
    if report is None:
        return "\n".join(lines)
    lines.append(
        f"bundle: {report['bundle']} ({report['precision']}; atol {report['atol']}, rtol {report['rtol']}; "
        f"input {report['input']})"
    )
    for a in report["artifacts"]:
        head = f"  {a['file']} on {a['backend']}: {a['status']}"
        if a["status"] in ("skipped", "reference", "failed"):
            lines.append(f"{head} ({a.get('reason')})")
            continue
        lines.append(head)
        for name, o in a["outputs"].items():
            if "error" in o:
                lines.append(f"    {name}: {o['error']}")
            else:
                flag = "ok" if o["ok"] else "MISMATCH"
                lines.append(f"    {name}: max abs {o['max_abs']:.3g}, max rel {o['max_rel']:.3g} {flag}")
    lines.append(
        f"checked: {report['compared']} artifact(s) compared with ONNX Runtime CPU, {report['skipped']} skipped"
        + (" (nothing but the reference runs here)" if not report["compared"] else "")
    )
    lines.append("result: " + ("ok" if report["ok"] else "MISMATCH: an artifact disagrees with ONNX Runtime CPU"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import platforms
    from edge.runtime import detect_facts

    machine_obj = platforms.detect(gpu=args.gpu)
    facts = detect_facts(gpu=args.gpu)
    machine = {
        "target": facts.target,
        "reason": machine_obj.reason,
        "facts": facts.describe(),
        "cuda": facts.cuda,
        "cuda_reason": facts.cuda_reason,
        "gpu": {
            "name": facts.gpu_name,
            "compute_capability": facts.compute_capability,
            "count": int(getattr(machine_obj, "gpu_count", 0) or 0),
            **{k: getattr(machine_obj, k, None) for k in GPU_VERSIONS},
        },
        "versions": versions(),
        "warnings": [w for w in (platforms.tensorrt_warning(machine_obj),) if w],
    }
    report = check_bundle(args.bundle, args.atol, args.rtol, facts) if args.bundle else None
    if args.json:
        print(json.dumps({"machine": machine, "bundle": report}, indent=2))
    else:
        print(format_text(machine, report))
    return 0 if report is None or report["ok"] else 1
