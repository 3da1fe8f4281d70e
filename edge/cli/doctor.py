"""``edge doctor [BUNDLE] [--reference MODEL.onnx]``: is this machine ready, and does every artifact agree with
FP32 ONNX Runtime on the CPU?

Prints the platform, library versions and CUDA status. With a bundle: every artifact that can run here (the
plans themselves, the ONNX on ONNX Runtime CUDA and CPU) is fed the same inputs, photos of real sizes made the
way ``edge infer`` makes them, and its outputs are compared with the reference: the FP32 export the bundle was
built from (``--reference``, or found by its sha256), else the bundle's own ONNX on ONNX Runtime's CPU
provider (per output: max abs error, max relative error, tolerance by precision). Artifacts that cannot run
here are listed with the reason. Exit 1 on any mismatch or failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# (atol, rtol) by the bundle's precision: an output passes when max |x - ref| <= atol + rtol * max |ref|
# (rtol: the largest error as a share of the output's peak; atol: a floor for outputs that are all near zero).
# platforms.Machine fields shown on the ``gpu:`` line (driver, CUDA, JetPack, L4T)
GPU_VERSIONS = ("driver_version", "cuda_version", "jetpack_version", "l4t_version")
TOLERANCES = {
    "fp32": (1e-4, 1e-3),
    "fp16": (1e-3, 3e-2),
    "int8": (1e-2, 0.15),
    "int8-dynamic": (1e-2, 0.15),
    "fp8": (1e-2, 0.15),
}
# TensorRT and TensorRT-RTX plans: their FP32 layers run on TF32 Tensor Cores by default on Ampere and newer
# (a 10-bit mantissa), so an fp32 plan differs from FP32 ONNX Runtime by ~1e-3 per layer, up to ~1e-2 of an
# output's range after a deep network; the other precisions already allow more than that.
PLAN_TOLERANCES = {"fp32": (1e-3, 2e-2)}


def tolerance(precision: str, backend: str, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """(atol, rtol) for an artifact of ``precision`` on ``backend``; ``--atol``/``--rtol`` override both."""
    base = TOLERANCES.get(precision, TOLERANCES["fp32"])
    if backend in ("tensorrt", "tensorrt-rtx"):
        base = PLAN_TOLERANCES.get(precision, base)
    return (atol if atol is not None else base[0], rtol if rtol is not None else base[1])


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
    p.add_argument(
        "--reference",
        metavar="MODEL.onnx",
        help="the FP32 export the bundle was built from (checked by sha256): every artifact, the bundle's own "
        "ONNX included, is compared with it (default: that file when found by name here or beside the bundle, "
        "else the bundle's ONNX)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="IMAGE",
        help="check on these photos (default: two synthetic ones, 640x480 and 375x500); int8/fp8 bundles are "
        "judged by their decoded results, so photos with objects in them make that check meaningful",
    )
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
    """Per output: ``max_abs`` (largest ``|x - ref|``), ``peak_relative_error`` (that over the largest ``|ref|``,
    as the builder's accuracy report defines it) and ``ok``: ``max_abs <= atol + rtol * max|ref|``.

    The tolerance scales with each output's own range, so box coordinates in pixels, scores in 0..1 and
    regression offsets near zero are judged alike (an element-wise relative error explodes near zero)."""
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
        finite = bool(np.isfinite(g).all() or not np.isfinite(r).all())
        diff = np.abs(g - r)
        max_abs = float(np.nanmax(diff)) if diff.size else 0.0
        peak = float(np.nanmax(np.abs(r))) if r.size else 0.0
        good = finite and max_abs <= atol + rtol * peak
        per[name] = {
            "ok": good,
            "max_abs": max_abs,
            "peak_relative_error": max_abs / peak if peak > 0 else 0.0,
        }
        if not finite:
            per[name]["error"] = "non-finite values (NaN/Inf) where the reference has none"
        ok = ok and good
    return {"ok": ok, "outputs": per}


# Photos of real sizes fed the way `edge infer` feeds them (Model.prepare): a VGA landscape and an odd-sized
# portrait, so a dynamic bundle is checked on what it will meet, not only on its optimization profile's opt shape.
PHOTO_SIZES = ((480, 640), (500, 375))  # (height, width)


def synthetic_photo(h: int, w: int, seed: int = 7) -> Any:
    """A BGR picture with gradients and noise (every channel different), ``h`` x ``w``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], axis=2)
    return np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


def doctor_inputs(model: Any, images: list[str] | None = None) -> list[tuple[str, dict[str, Any], list[Any] | None]]:
    """``(case, feeds, metas)``: the ``images`` (``--images``), else synthetic photos of :data:`PHOTO_SIZES`,
    through the bundle's preprocess exactly as ``infer`` sizes and fills them; a model without a single image
    input gets its example inputs (the opt shape) and no metas (nothing to decode)."""
    from edge.preprocess import load_image

    pre = model.manifest.preprocess
    if len(model.inputs) != 1 or model.inputs[0].name != pre.input:
        return [("example input", dict(model.example_inputs(1)), None)]
    if images:
        named = [(Path(p).name, load_image(p)) for p in images]
    else:
        named = [(f"photo {w}x{h}", synthetic_photo(h, w)) for h, w in PHOTO_SIZES]
    cases = []
    for name, image in named:
        feeds, metas = model.prepare([image])
        cases.append((name, {k: v.copy() for k, v in feeds.items()}, metas))  # prepare reuses its buffer
    return cases


# Quantized artifacts (int8, fp8) are judged by what the user gets: the decoded results (the builder's accuracy
# gate does the same). Their raw regression outputs drift far more than the results do, most of all on anchors
# with nothing in them, which the decoder discards; the raw errors are still reported.
QUANTIZED = ("int8", "int8-dynamic", "fp8")
RESULTS_F1 = 0.9  # boxes matched (same class, IoU >= 0.5) between artifact and reference, as an F1 score


def results_agreement(
    outputs: dict[str, Any], reference: dict[str, Any], post: Any, metas: list[Any]
) -> dict[str, Any] | None:
    """Whether the decoded results agree: box F1 for box tasks, the top class for classifiers; None for raw."""
    import numpy as np

    from edge.decoders import decode
    from edge.results import Classifications, Detections

    if post.task == "raw":
        return None
    mine, ref = decode(outputs, post, metas), decode(reference, post, metas)
    matched = total_mine = total_ref = 0
    for a, b in zip(mine, ref):
        if isinstance(a, Classifications) and isinstance(b, Classifications):
            same = bool(len(a) and len(b) and a.class_ids[0] == b.class_ids[0])
            return {"metric": "top1_agreement", "value": float(same), "ok": same}
        if not (isinstance(a, Detections) and isinstance(b, Detections)):
            return None
        total_mine, total_ref = total_mine + len(a), total_ref + len(b)
        used: set[int] = set()
        for box, cls in zip(b.boxes, b.class_ids):
            for j in range(len(a)):
                if j not in used and a.class_ids[j] == cls and _iou(np.asarray(a.boxes[j]), np.asarray(box)) >= 0.5:
                    used.add(j)
                    matched += 1
                    break
    f1 = 1.0 if total_mine + total_ref == 0 else 2 * matched / (total_mine + total_ref)
    out = {"metric": "box_f1", "value": f1, "ok": f1 >= RESULTS_F1, "boxes": [total_mine, total_ref]}
    if total_mine + total_ref == 0:  # nothing to compare: says nothing about the converted model
        out["note"] = "no box in either: not judged; give --images with objects in them"
    return out


def _iou(a: Any, b: Any) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def find_reference(bundle: Any, given: str | None) -> tuple[Path | None, str]:
    """The FP32 ONNX export the bundle was built from (``--reference``, else the manifest's ``model.source``
    found in the working directory or beside the bundle), checked by sha256; and a note saying what was used."""
    from edge.errors import ConfigError
    from edge.manifest import sha256_file

    m = bundle.manifest
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"--reference {given}: no such file; give the ONNX file the bundle was built from")
        if sha256_file(path) != m.source_sha256:
            raise ConfigError(
                f"--reference {given}: not the export this bundle was built from (its sha256 differs from the "
                f"manifest's model.source_sha256 {m.source_sha256[:12]}...); give {m.source}, the file it was built from"
            )
        return path, f"{path} (the export it was built from, sha256 matches)"
    for path in (Path(m.source), bundle.path.parent / m.source):
        if path.is_file() and sha256_file(path) == m.source_sha256:
            return path, f"{path} (the export it was built from, found by its sha256)"
    return None, ""


def check_bundle(
    path: str,
    atol: float | None,
    rtol: float | None,
    facts: Any,
    reference: str | None = None,
    images: list[str] | None = None,
) -> dict[str, Any]:
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.runtime import load, make_backend
    from edge.runtime.bundle import Bundle
    from edge.runtime.select import Choice, describe_artifact, plan_problem

    bundle = Bundle.open(path)
    m = bundle.manifest
    a_tol, r_tol = tolerance(m.precision, "onnxruntime", atol, rtol)
    source, source_note = find_reference(bundle, reference)
    report: dict[str, Any] = {"bundle": path, "precision": m.precision, "atol": a_tol, "rtol": r_tol, "artifacts": []}
    with load(bundle, "onnxruntime-cpu", warmup=0, facts=facts) as ref_model:
        cases = doctor_inputs(ref_model, images)
        onnx_art = ref_model.artifact
        if source is None:
            references = [_run(ref_model.backend, feeds) for _, feeds, _ in cases]
    if source is not None:
        with OnnxRuntimeBackend(source, providers=["CPUExecutionProvider"]) as fp32:
            references = [_run(fp32, feeds) for _, feeds, _ in cases]
        report["reference"] = {"file": str(source), "precision": "fp32", "note": source_note}
    else:
        own = f"{onnx_art.file} ({m.precision}, the bundle's own ONNX)"
        hint = "" if m.precision == "fp32" else "; give --reference MODEL.onnx (the FP32 export) to compare with FP32"
        report["reference"] = {"file": onnx_art.file, "precision": m.precision, "note": own + hint}
    report["inputs"] = [{"case": c, "shapes": {k: list(v.shape) for k, v in feeds.items()}} for c, feeds, _ in cases]
    failed_refs = [f"{case}: {ref}" for (case, _, _), ref in zip(cases, references) if isinstance(ref, str)]

    def judge(metas: list[Any] | None) -> Any:
        """Quantized bundles with a task: the decoded results decide (see QUANTIZED); else None (raw outputs)."""
        if m.precision not in QUANTIZED or metas is None:
            return None
        return lambda outputs, reference: results_agreement(outputs, reference, m.postprocess, metas)

    if failed_refs:
        report["reference"]["failed"] = failed_refs

    candidates: list[tuple[Any, Choice | None]] = []
    for art in m.artifacts:
        if art.backend == "onnxruntime":
            cpu = Choice(art, "onnxruntime", ("CPUExecutionProvider",))
            candidates.append((art, None if source is None and art is onnx_art else cpu))
            gpu = [p for p in facts.ort_providers if p == "CUDAExecutionProvider"]
            if gpu and facts.cuda:
                candidates.append((art, Choice(art, "onnxruntime", (*gpu, "CPUExecutionProvider"))))
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
            candidates.append((art, Choice(art, art.backend)))
    if source is None:
        report["artifacts"].insert(
            0,
            {
                "file": onnx_art.file,
                "backend": "onnxruntime-cpu",
                "status": "reference",
                "reason": "the reference all others are compared with",
            },
        )
    for art, choice in candidates:
        if choice is None:
            continue
        art_atol, art_rtol = tolerance(m.precision, choice.backend, atol, rtol)
        entry: dict[str, Any] = {"file": art.file, "backend": choice.label, "atol": art_atol, "rtol": art_rtol}
        # progress: a TensorRT-RTX plan JIT-compiles its kernels on first load (can take a while)
        print(f"checking {art.file} on {choice.label} ...", file=sys.stderr, flush=True)
        try:
            # pinned: a CUDA provider that does not start is a failure, not a CPU run compared with the CPU
            backend = make_backend(bundle, choice, state_dir=_state_dir(), pinned=choice.label, device=facts.device)
            with backend:
                entry["cases"] = [
                    _compare_case(case, backend, feeds, ref, art_atol, art_rtol, judge(metas))
                    for (case, feeds, metas), ref in zip(cases, references)
                ]
            entry["ok"] = all(c["ok"] for c in entry["cases"])
            entry["status"] = "ok" if entry["ok"] else "mismatch"
        except Exception as exc:  # report every artifact, even one that fails to load
            entry.update({"status": "failed", "ok": False, "reason": str(exc)})
        report["artifacts"].append(entry)
    report["ok"] = not failed_refs and all(a.get("ok", True) for a in report["artifacts"])
    report["compared"] = sum(1 for a in report["artifacts"] if a["status"] not in ("reference", "skipped"))
    report["skipped"] = sum(1 for a in report["artifacts"] if a["status"] == "skipped")
    return report


def _run(backend: Any, feeds: dict[str, Any]) -> dict[str, Any] | str:
    """The backend's outputs, or the error text when it refuses or fails (reported, never raised)."""
    from edge.errors import EdgeError

    try:
        return dict(backend.infer(feeds))
    except EdgeError as exc:
        return str(exc)


def _compare_case(
    case: str,
    backend: Any,
    feeds: dict[str, Any],
    reference: dict[str, Any] | str,
    atol: float,
    rtol: float,
    judge: Any = None,
) -> dict[str, Any]:
    if isinstance(reference, str):
        return {"case": case, "ok": False, "error": f"the reference failed: {reference}"}
    outputs = _run(backend, feeds)
    if isinstance(outputs, str):
        return {"case": case, "ok": False, "error": outputs}
    entry = {"case": case, **compare(outputs, reference, atol, rtol)}
    agreement = judge(outputs, reference) if judge is not None else None
    if agreement is not None:  # the results decide; the raw errors stay in the report
        entry["results"] = agreement
        entry["ok"] = agreement["ok"]
    return entry


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
    lines.append(f"bundle: {report['bundle']} ({report['precision']}; atol {report['atol']}, rtol {report['rtol']})")
    ref = report["reference"]
    lines.append(f"reference: {ref['note']}, on ONNX Runtime CPU")
    for failure in ref.get("failed", []):
        lines.append(f"  reference FAILED on {failure}")
    shapes = "; ".join(
        f"{i['case']} -> " + ", ".join(f"{k} {v}" for k, v in i["shapes"].items()) for i in report["inputs"]
    )
    lines.append(f"inputs: {shapes} (as `edge infer` feeds them)")
    for a in report["artifacts"]:
        head = f"  {a['file']} on {a['backend']}: {a['status']}"
        if "rtol" in a and (a["atol"], a["rtol"]) != (report["atol"], report["rtol"]):
            head += f" (atol {a['atol']}, rtol {a['rtol']})"
        if a["status"] in ("skipped", "reference", "failed"):
            lines.append(f"{head} ({a.get('reason')})")
            continue
        lines.append(head)
        for case in a["cases"]:
            if "error" in case:
                lines.append(f"    {case['case']}: FAILED ({case['error']})")
                continue
            judged = case.get("results")
            for name, o in case["outputs"].items():
                if "error" in o:
                    lines.append(f"    {case['case']}: {name}: {o['error']}")
                else:
                    flag = "ok" if o["ok"] else ("drifts (the results decide)" if judged else "MISMATCH")
                    lines.append(
                        f"    {case['case']}: {name}: max abs {o['max_abs']:.3g}, "
                        f"peak relative {o['peak_relative_error']:.3g} {flag}"
                    )
            if judged:
                boxes = f" ({judged['boxes'][0]} vs {judged['boxes'][1]} boxes)" if "boxes" in judged else ""
                flag = judged.get("note") or ("ok" if judged["ok"] else "MISMATCH")
                lines.append(f"    {case['case']}: results: {judged['metric']} {judged['value']:.3f}{boxes} {flag}")
    what = "FP32 ONNX Runtime CPU" if ref["precision"] == "fp32" else f"the {ref['precision']} ONNX on ONNX Runtime CPU"
    lines.append(
        f"checked: {report['compared']} artifact(s) compared with {what}, {report['skipped']} skipped"
        + (" (nothing but the reference runs here)" if not report["compared"] else "")
    )
    unjudged = any(
        (c.get("results") or {}).get("note") for a in report["artifacts"] if a.get("cases") for c in a["cases"]
    )
    note = " (decoded results not judged on some inputs: no box in either; --images with objects judges them)"
    lines.append(
        "result: "
        + (
            "ok" + (note if unjudged else "")
            if report["ok"]
            else f"MISMATCH: an artifact disagrees with {what} or failed"
        )
    )
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
    report = (
        check_bundle(args.bundle, args.atol, args.rtol, facts, args.reference, args.images) if args.bundle else None
    )
    if args.json:
        print(json.dumps({"machine": machine, "bundle": report}, indent=2))
    else:
        print(format_text(machine, report))
    return 0 if report is None or report["ok"] else 1
