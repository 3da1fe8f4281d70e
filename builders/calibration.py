"""Calibration data and activation statistics for FP16 range checks and INT8 scales.

:func:`load_calibration` turns a folder of images (through :func:`edge.preprocess.preprocess`, the code
the runtime uses, so scales are computed on exactly the tensors the device will see) or a ``.npy`` of
already-preprocessed tensors into a list of ONNX Runtime feeds.

:func:`collect_stats` runs the FP32 model once per sample through ONNX Runtime with chosen intermediate
tensors exposed as outputs and keeps, per tensor, the exact ``|x|`` maximum and a 2048-bin histogram of
``|x|`` (its range grows by powers of two, so old counts merge exactly and one pass is enough).
:class:`TensorStats` then gives a symmetric clipping threshold per calibration method:

- ``minmax``: the largest ``|x|`` seen;
- ``percentile``: the 99.99th percentile of ``|x|``;
- ``entropy``: TensorRT's KL-divergence calibration (the threshold whose 128-level quantized
  distribution is closest to the observed one), as in NVIDIA's pytorch-quantization.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from builders.progress_bar import ProgressBar
from builders.shapes import format_shape, ort_error_summary, ort_session
from edge.errors import BuildError, EdgeError
from edge.manifest import TensorSpec
from edge.preprocess import load_image, preprocess
from edge.spec import PreprocessSpec

HOLDOUT_SHARE = 0.2  # of --calib held out for the accuracy check when no --val is given (int8/fp8)
HOLDOUT_MAX = 200
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BINS = 2048
PERCENTILE = 99.99
QUANT_LEVELS = 128  # int8: 127 positive levels and zero, TensorRT's entropy target
SMOOTHING = 1e-4  # count given to an empty bin of Q where P has data (as ONNX Runtime's calibrator)

Sample = dict[str, np.ndarray]


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (the order calibration uses)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_calibration(
    path: str | os.PathLike[str],
    spec: PreprocessSpec,
    input_spec: TensorSpec,
    limit: int | None = None,
    *,
    subset: Sequence[str] | None = None,
) -> list[Sample]:
    """Calibration feeds ``[{input_name: array}, ...]`` from an image folder or a ``.npy`` file.

    Images are preprocessed at ``spec.size``, else at ``input_spec``'s fixed height/width (pass a
    TensorSpec whose shape is the profile's ``opt`` shape to calibrate a dynamic model at one size).
    A fixed batch size ``B > 1`` stacks ``B`` images per feed. ``limit`` keeps the first N images (by
    name) or rows. ``subset`` (from :func:`split_holdout`) keeps only those file names or ``row N`` items.
    """
    p = check_source(path)
    if p.is_dir():
        return _from_images(p, spec, input_spec, limit, subset)
    return _from_npy(p, input_spec, limit, subset)


@dataclass(frozen=True)
class Holdout:
    """``--calib`` split in two: what calibrates and what the accuracy gate grades on (never both)."""

    calibrate: tuple[str, ...]  # file names, or "row N" of a .npy
    validate: tuple[str, ...]

    def info(self, source: Path) -> dict[str, Any]:
        return {
            "source": f"held out from --calib {source.name}",
            "rule": f"{HOLDOUT_SHARE:.0%} of the items (at most {HOLDOUT_MAX}), those whose file name (or row "
            "number) has the lowest sha256; they do not calibrate",
            "count": len(self.validate),
            "items": list(self.validate),
        }


def _holdout_key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def split_holdout(path: str | os.PathLike[str], limit: int | None = None, batch: int = 1) -> Holdout:
    """Hold out a share of ``--calib`` for the accuracy check, deterministically (see :class:`Holdout`).

    The validation share is chosen by hash, so it does not depend on listing order and adding images keeps
    earlier choices mostly in place; ``limit`` then caps the calibration images (first N by name).
    """
    p = check_source(path)
    if p.is_dir():
        items = [f.name for f in image_files(p)]
    else:
        rows = _npy_rows(p)
        items = [f"row {i}" for i in range(rows)]
    count = min(HOLDOUT_MAX, max(batch, round(len(items) * HOLDOUT_SHARE)))
    if len(items) - count < batch:
        raise BuildError(
            f"--calib {p}: {len(items)} item(s) cannot be split into calibration and held-out validation data "
            f"(the accuracy check must not grade on calibration images); add images or give --val"
        )
    held = set(sorted(items, key=_holdout_key)[:count])
    calibrate = [i for i in items if i not in held]
    calibrate = calibrate[:limit] if limit else calibrate
    return Holdout(tuple(calibrate), tuple(i for i in items if i in held))


def check_source(path: str | os.PathLike[str]) -> Path:
    """``path`` as calibration data: an existing ``.npy`` file or a folder holding images. Cheap, so
    the builder calls it before loading the model; a :class:`BuildError` otherwise."""
    p = Path(path)
    if not p.exists():
        raise BuildError(f"{p}: calibration data not found; give a folder of images or a .npy of input tensors")
    if p.is_dir():
        if not image_files(p):
            raise BuildError(
                f"{p}: no images to calibrate on (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                "add a few hundred representative images"
            )
        return p
    if p.suffix.lower() == ".npy":
        return p
    raise BuildError(f"{p}: calibration data must be a folder of images or a .npy file of preprocessed inputs")


def _from_images(
    folder: Path, spec: PreprocessSpec, input_spec: TensorSpec, limit: int | None, subset: Sequence[str] | None
) -> list[Sample]:
    files = image_files(folder)
    if subset is not None:
        wanted = set(subset)
        files = [f for f in files if f.name in wanted]
    if not files:
        raise BuildError(
            f"{folder}: no images to calibrate on (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "add a few hundred representative images"
        )
    files = files[:limit] if limit else files
    batch = input_spec.shape[0] if input_spec.shape and input_spec.shape[0] > 0 else 1
    if len(files) < batch:
        raise BuildError(f"{folder}: {len(files)} images, but the model's fixed batch needs {batch} per feed")
    tensors: list[np.ndarray] = []
    with ProgressBar(len(files), "calibration images") as bar:
        for file in files:
            try:
                tensor, _ = preprocess(load_image(file), spec, input_spec.shape)
            except EdgeError as exc:
                raise BuildError(f"calibration image {exc}") from None
            if tensors and tensor.shape != tensors[0].shape:
                raise BuildError(
                    f"{file}: preprocesses to {format_shape(tensor.shape)} but earlier images to "
                    f"{format_shape(tensors[0].shape)}; set a fixed --size for a model with dynamic height/width"
                )
            tensors.append(tensor)
            bar.advance()
    usable = len(tensors) - len(tensors) % batch
    return [{input_spec.name: np.concatenate(tensors[i : i + batch])} for i in range(0, usable, batch)]


def _npy_rows(file: Path) -> int:
    try:
        data = np.load(file, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise BuildError(f"{file}: not a readable .npy array ({exc})") from None
    return int(data.shape[0]) if data.ndim else 1


def _from_npy(file: Path, input_spec: TensorSpec, limit: int | None, subset: Sequence[str] | None) -> list[Sample]:
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BuildError(f"{file}: not a readable .npy array ({exc})") from None
    shape = input_spec.shape
    if shape and data.ndim == len(shape) - 1:
        data = data[None]
    if not shape or data.ndim != len(shape) or any(d > 0 and d != v for d, v in zip(shape[1:], data.shape[1:])):
        raise BuildError(
            f"{file}: array of shape {format_shape(data.shape)} does not fit input {input_spec.name!r} "
            f"({format_shape(shape)}); save N preprocessed tensors as [N, ...] with the input's other dimensions"
        )
    if data.dtype.kind not in "fiu":
        raise BuildError(f"{file}: array has dtype {data.dtype}; expected numbers ({input_spec.dtype})")
    if len(data) == 0:
        raise BuildError(f"{file}: the array holds no samples")
    if subset is not None:
        data = data[[int(item.split()[-1]) for item in subset]]
    data = data[:limit] if limit else data
    data = data.astype(np.dtype(input_spec.dtype), copy=False)
    batch = shape[0] if shape[0] > 0 else 1
    if len(data) < batch:
        raise BuildError(f"{file}: {len(data)} rows, but the model's fixed batch needs {batch} per feed")
    usable = len(data) - len(data) % batch
    return [{input_spec.name: np.ascontiguousarray(data[i : i + batch])} for i in range(0, usable, batch)]


def calibration_info(path: str | os.PathLike[str], samples: Sequence[Sample], method: str) -> dict[str, Any]:
    """The manifest's ``calibration`` field: method, image count, sha256 of the tensors, source name."""
    h = hashlib.sha256()
    count = 0
    for sample in samples:
        for name in sorted(sample):
            h.update(name.encode())
            h.update(np.ascontiguousarray(sample[name]).tobytes())
        first = next(iter(sample.values()))
        count += int(first.shape[0]) if first.ndim else 1
    return {"method": method, "images": count, "data_sha256": h.hexdigest(), "source": Path(path).name}


# -- activation statistics -------------------------------------------------------------------------


def float_tensor_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Name -> type of every float32 activation that shape inference typed (graph inputs and node outputs)."""
    inits = {t.name for t in model.graph.initializer}
    types = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        if value.name not in inits and value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            types[value.name] = value.type
    return types


def with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also returns the given intermediate float tensors."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            value = out.graph.output.add()
            value.name = name
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
            present.add(name)
    return out


class TensorStats:
    """``|x|`` maximum and histogram of one tensor over all calibration samples."""

    def __init__(self, bins: int = BINS) -> None:
        self.bins = bins
        self.amax = 0.0
        self.top = 0.0  # histogram covers [0, top]
        self.hist = np.zeros(bins, dtype=np.int64)

    def add(self, values: np.ndarray, histogram: bool = True) -> None:
        a = np.abs(values[np.isfinite(values)], dtype=np.float32).ravel()
        if a.size == 0:
            return
        peak = float(a.max())
        self.amax = max(self.amax, peak)
        if not histogram or peak == 0.0:
            if histogram:
                self.hist[0] += a.size
            return
        if self.top == 0.0:
            self.top = peak
        elif peak > self.top:
            factor = 1 << int(np.ceil(np.log2(peak / self.top)))
            if factor >= self.bins:
                self.hist = np.concatenate([[self.hist.sum()], np.zeros(self.bins - 1, np.int64)])
            else:
                merged = self.hist.reshape(self.bins // factor, factor).sum(axis=1)
                self.hist = np.concatenate([merged, np.zeros(self.bins - merged.size, np.int64)])
            self.top *= factor
        counts, _ = np.histogram(a, bins=self.bins, range=(0.0, self.top))
        self.hist += counts

    def threshold(self, method: str) -> float:
        """Symmetric clipping threshold for ``minmax``, ``percentile`` or ``entropy``."""
        if method == "minmax" or self.amax == 0.0 or self.top == 0.0:
            return self.amax
        width = self.top / self.bins
        if method == "percentile":
            cdf = np.cumsum(self.hist) / max(1, self.hist.sum())
            index = int(np.searchsorted(cdf, PERCENTILE / 100.0))
            return min(self.amax, (index + 1) * width)
        if method == "entropy":
            return min(self.amax, entropy_bin(self.hist) * width)
        raise BuildError(f"unknown calibration method {method!r}; use entropy, minmax or percentile")


def entropy_bin(hist: np.ndarray, levels: int = QUANT_LEVELS, max_candidates: int = 512) -> int:
    """The histogram bin at which clipping minimises KL(P || Q) (TensorRT's entropy calibration).

    P is the histogram cut at bin i with the clipped tail added to its last bin; Q merges the first i
    bins into ``levels`` groups and spreads each group's count evenly over its non-empty bins. The
    zero bin is set to its neighbour's count so a ReLU's many exact zeros do not dominate.
    """
    bins = hist.astype(np.float64)
    if bins.size <= levels:
        return int(bins.size)
    bins[0] = bins[1]
    total = bins.sum()
    if total == 0:
        return int(bins.size)
    stride = max(1, (bins.size - levels) // max_candidates)
    best, best_kl = bins.size, np.inf
    cumulative = np.cumsum(bins[::-1])[::-1]  # cumulative[i] = sum(bins[i:])
    for i in range(levels, bins.size + 1, stride):
        sliced = bins[:i]
        group = (np.arange(i) * levels) // i
        nonzero = sliced > 0
        sums = np.bincount(group, weights=sliced, minlength=levels)
        counts = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero, (sums / np.maximum(counts, 1))[group], 0.0)
        p = sliced.copy()
        if i < bins.size:
            p[-1] += cumulative[i]
        mask = p > 0
        q = np.where(mask & (q == 0), SMOOTHING, q)  # a clipped tail's lone bin: costly, not impossible
        pn = p[mask] / p.sum()
        qn = q[mask] / q.sum()
        kl = float(np.sum(pn * np.log(pn / qn)))
        if kl <= best_kl:  # ties: the larger threshold, as TensorRT
            best, best_kl = i, kl
    return best


def collect_stats(
    model: onnx.ModelProto,
    samples: Sequence[Sample],
    names: Sequence[str],
    *,
    histogram: bool = True,
    label: str = "calibrate",
) -> dict[str, TensorStats]:
    """Run ``model`` on every sample with ``names`` exposed; per-tensor statistics (with a progress bar)."""
    if not samples:
        raise BuildError("no calibration samples: give a folder with at least one image")
    stats = {name: TensorStats() for name in names}
    if not names:
        return stats
    try:
        session = ort_session(with_outputs(model, names))
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(f"ONNX Runtime cannot load the model to calibrate it: {ort_error_summary(str(exc))}") from None
    with ProgressBar(len(samples), label) as bar:
        for sample in samples:
            try:
                values = session.run(list(names), sample)
            except Exception as exc:  # ORT raises its own untyped exception family
                raise BuildError(f"calibration run failed: {ort_error_summary(str(exc))}") from None
            for name, value in zip(names, values):
                stats[name].add(np.asarray(value), histogram)
            bar.advance()
    return stats
