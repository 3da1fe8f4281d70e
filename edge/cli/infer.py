"""``edge infer BUNDLE IMAGE... [--backend B] [--json] [--save DIR]``: run a bundle on image files.

Text output: one line per image with its detections (or classes). ``--json``: one JSON object per line,
``{"image": path, "detections": [...]}`` (``classes``/``outputs`` for other tasks). ``--save DIR`` writes
annotated images (``DIR/<name>.jpg``) or, for ``task: raw``, ``DIR/<name>.npz`` with every output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.fsutil import atomic_write

# The ``--backend`` choices: ``edge.runtime.select.BACKEND_CHOICES``, spelled out because importing
# ``edge.runtime`` at registration would load numpy, OpenCV and the backends for every command
# (tests/cli/test_infer.py checks that the two stay equal).
BACKEND_CHOICES = ("tensorrt", "tensorrt-rtx", "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "infer",
        help="run a bundle on image files",
        description="Run a bundle on image files and print the results (boxes in original-image pixels).",
    )
    p.add_argument("bundle", help="bundle directory (from `edge build`)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP; grayscale and RGBA too)")
    p.add_argument("--backend", choices=("auto", *BACKEND_CHOICES), default="auto", help="pin a backend")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--save", type=Path, metavar="DIR", help="write annotated images (or .npz for raw outputs)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (0: its default)")
    p.add_argument(
        "--gpu",
        metavar="INDEX|UUID",
        help="which GPU on a machine with several: nvidia-smi's index or UUID, as `edge info` lists them (default 0)",
    )
    p.set_defaults(func=run)


def save_result(out_dir: Path, image_path: str, image: Any, result: Any, used: set[str]) -> Path:
    """Write ``result`` for ``image_path`` into ``out_dir``: an annotated JPEG, or an .npz of raw outputs."""
    import io

    import cv2
    import numpy as np

    from edge.draw import draw
    from edge.errors import SourceError
    from edge.results import RawOutputs

    stem = Path(image_path).stem or "image"
    name, n = stem, 1
    while name in used:  # two inputs with the same file name in different folders
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    if isinstance(result, RawOutputs):
        buf = io.BytesIO()
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in result.outputs.items()}
        np.savez(buf, **arrays)
        path = out_dir / f"{name}.npz"
        atomic_write(path, buf.getvalue())
        return path
    ok, encoded = cv2.imencode(".jpg", draw(image, result))
    if not ok:
        raise SourceError(f"{out_dir / name}.jpg: OpenCV could not encode the annotated image")
    path = out_dir / f"{name}.jpg"
    atomic_write(path, encoded.tobytes())
    return path


def _summary(result: Any) -> str:
    from edge.results import Classifications, Detections

    if isinstance(result, Detections):
        items = [f"{d['label']} {d['score']:.3f} [{', '.join(f'{v:.0f}' for v in d['box'])}]" for d in result.to_json()]
        return f"{len(result)} detection(s)" + (": " + "; ".join(items) if items else "")
    if isinstance(result, Classifications):
        return "; ".join(f"{c['label']} {c['score']:.3f}" for c in result.to_json())
    return "outputs " + ", ".join(f"{k} {list(v.shape)}" for k, v in result.outputs.items())


def run(args: argparse.Namespace) -> int:
    from edge.errors import SourceError
    from edge.preprocess import load_image
    from edge.results import result_json
    from edge.runtime import load

    # Read every image first: a bad file fails before the model loads; the --save directory is made only once
    # the images and the model are good, so a user mistake leaves nothing on disk.
    images = [(path, load_image(path)) for path in args.images]
    backend = None if args.backend == "auto" else args.backend
    used: set[str] = set()
    with load(args.bundle, backend, intra_op_threads=args.threads, gpu=args.gpu) as model:
        if args.save is not None:
            try:
                args.save.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"{args.save}: cannot create the output directory ({exc.strerror})") from None
        if not args.json:
            print(f"{model.manifest.name}: {model.artifact.file} on {model.backend_name}", file=sys.stderr)
        for path, image in images:
            result = model.predict(image)
            saved = save_result(args.save, path, image, result, used) if args.save is not None else None
            if args.json:
                print(json.dumps({"image": path, **result_json(result)}), flush=True)
            else:
                t = model.timings
                timing = (
                    f"(preprocess {t.get('preprocess', 0):.1f} ms, infer {t.get('infer', 0):.1f} ms, "
                    f"postprocess {t.get('postprocess', 0):.1f} ms)"
                )
                print(f"{path}: {_summary(result)} {timing}" + (f" -> {saved}" if saved else ""), flush=True)
    return 0
