"""Images to input tensors, from a :class:`~edge.spec.PreprocessSpec`: the one implementation.

The builder's calibration and accuracy gate, ``edge infer``, the pipeline and the HTTP API all call
:func:`preprocess`; :class:`Meta` maps results back to original-image pixels
(``x_orig = (x_net - pad_x) / scale_x``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from edge.errors import ConfigError, SourceError
from edge.spec import PreprocessSpec


@dataclass(frozen=True)
class Meta:
    """Where the original image sits inside the network input: it was resized by (``scale_x``,
    ``scale_y``) and placed at (``pad_x``, ``pad_y``); negative offsets mean a centre crop cut that much."""

    orig_h: int
    orig_w: int
    net_h: int
    net_w: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``[..., 4]`` xyxy (or ``[..., 2k]`` x,y pairs) from network pixels to original pixels, clipped."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[..., 0::2] = np.clip((out[..., 0::2] - self.pad_x) / self.scale_x, 0, self.orig_w)
        out[..., 1::2] = np.clip((out[..., 1::2] - self.pad_y) / self.scale_y, 0, self.orig_h)
        return out


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR; a clear error for missing, empty or undecodable files."""
    p = Path(path)
    if p.is_dir():
        raise SourceError(f"{p}: is a directory, not an image file; name the image files (e.g. {p}/*.jpg)")
    if not p.is_file():
        raise SourceError(f"{p}: image file not found")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"{p}: cannot read the image file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise SourceError(f"{p}: image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"{p}: not a readable image (OpenCV could not decode it); give a JPEG, PNG or BMP file")
    return to_bgr(image, str(p))


# What the Python API takes as an image: an OpenCV-style array (BGR), a PIL image (RGB), or a file path.
ImageLike = Union[np.ndarray, str, "os.PathLike[str]", Any]


def is_pil_image(obj: object) -> bool:
    """True for a PIL/Pillow image (checked by its class's module, so PIL is never imported here)."""
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(obj).__mro__)


def as_image(image: object, where: str = "image") -> np.ndarray:
    """An image the Python API was given, as HxWx3 BGR uint8 (what OpenCV and :func:`preprocess` use).

    A numpy array is taken as OpenCV gives it (BGR, or gray/BGRA); a PIL image as PIL holds it (RGB, or
    L/RGBA/P/I;16..., converted to RGB by PIL first) and its channels are swapped to BGR; a ``str`` or
    ``os.PathLike`` is read with :func:`load_image`. An RGB numpy array (from PIL, imageio, matplotlib) must
    be reversed first (``rgb[..., ::-1]``) or passed as ``PIL.Image.fromarray(rgb)``.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if is_pil_image(image):
        rgb = np.asarray(image.convert("RGB"))  # type: ignore[attr-defined]
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not isinstance(image, np.ndarray):
        raise ConfigError(
            f"{where}: expected a numpy array (OpenCV BGR), a PIL image or an image file path, "
            f"got {type(image).__name__}"
        )
    return to_bgr(image, where)


def to_bgr(image: np.ndarray, where: str = "image") -> np.ndarray:
    """Grayscale (HxW or HxWx1), BGR and BGRA uint8 images as HxWx3 BGR uint8."""
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"{where}: expected a numpy array (HxW, HxWx3 or HxWx4 uint8), got {type(image).__name__}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ConfigError(f"{where}: expected uint8 pixels, got {image.dtype}; convert with image.astype(np.uint8)")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ConfigError(f"{where}: expected an HxW, HxWx3 or HxWx4 image, got shape {tuple(image.shape)}")


def _hw_axes(spec: PreprocessSpec) -> tuple[int, int]:
    return (2, 3) if spec.layout == "nchw" else (1, 2)


def _round_up(value: int, stride: int) -> int:
    return -(-value // stride) * stride


def network_size(
    spec: PreprocessSpec,
    input_shape: tuple[int, ...],
    image_hw: tuple[int, int],
    profile: Mapping[str, Sequence[int]] | None = None,
) -> tuple[int, int]:
    """The (height, width) fed to the network for an image of ``image_hw``.

    In order: ``spec.size``; the input's fixed height/width; for dynamic axes, the optimization
    ``profile``'s ``opt`` (letterbox, stretch, center-crop), or with ``resize="none"`` the image's own
    size rounded up to ``spec.stride`` and kept within the profile's ``min..max`` (an image larger than
    ``max`` is scaled down to fit, keeping its aspect ratio). Without a profile a dynamic axis takes the
    image's size rounded up to the stride.
    """
    if spec.size is not None:
        return spec.size
    axes = _hw_axes(spec)
    dims = [int(input_shape[a]) if len(input_shape) > a else -1 for a in axes]
    if all(d > 0 for d in dims):
        return dims[0], dims[1]
    has = profile is not None and all(len(profile[k]) > max(axes) for k in ("min", "opt", "max"))
    lo = [int(profile["min"][a]) if has and profile else 1 for a in axes]
    opt = [int(profile["opt"][a]) if has and profile else 0 for a in axes]
    hi = [int(profile["max"][a]) if has and profile else 0 for a in axes]
    if spec.resize != "none" and has:
        return tuple(d if d > 0 else o for d, o in zip(dims, opt))  # type: ignore[return-value]
    s = spec.stride
    if spec.resize != "none":  # dynamic, no profile (an ONNX that takes any size): the image's own size
        return tuple(d if d > 0 else _round_up(n, s) for d, n in zip(dims, image_hw))  # type: ignore[return-value]
    # resize "none": the image's own size, scaled down only if it exceeds the largest the model takes
    bounds = [d if d > 0 else (h if has else 0) for d, h in zip(dims, hi)]
    r = min([1.0] + [b / n for b, n in zip(bounds, image_hw) if b > 0])
    scaled = [max(1, round(n * r)) for n in image_hw]
    out = []
    for d, n, low, b in zip(dims, scaled, lo, bounds):
        if d > 0:
            out.append(d)
        else:
            want = max(low, _round_up(n, s))
            out.append(min(b, want) if b > 0 else want)
    return out[0], out[1]


def geometry(spec: PreprocessSpec, image_hw: tuple[int, int], net_hw: tuple[int, int]) -> tuple[Meta, tuple[int, int]]:
    """Where an ``image_hw`` image goes in a ``net_hw`` input: its :class:`Meta` and the resized image size.

    The resized image (``rh x rw``) is placed at (``pad_y``, ``pad_x``); for center-crop the offsets are
    negative (the crop's corner inside the resized image) and the resized image is larger than the input.
    """
    oh, ow = image_hw
    nh, nw = net_hw
    if spec.resize == "stretch":
        return Meta(oh, ow, nh, nw, nw / ow, nh / oh, 0.0, 0.0), (nh, nw)
    if spec.resize == "center-crop":
        # torchvision Resize(int(size / F)) + CenterCrop(size): the side that binds gets exactly
        # floor(n / F), the other int(target * long / short) (torchvision's rounding), then the centre
        th, tw = math.floor(nh / spec.crop_fraction), math.floor(nw / spec.crop_fraction)
        if th / oh >= tw / ow:
            rh, rw = th, int(th * ow / oh)
        else:
            rh, rw = int(tw * oh / ow), tw
        rh, rw = max(rh, nh), max(rw, nw)
        top, left = round((rh - nh) / 2.0), round((rw - nw) / 2.0)  # torchvision's CenterCrop (round half to even)
        return Meta(oh, ow, nh, nw, rw / ow, rh / oh, float(-left), float(-top)), (rh, rw)
    # none: no resize, unless the image is larger than the input
    r = min(nh / oh, nw / ow) if spec.resize == "letterbox" else min(1.0, nh / oh, nw / ow)
    rw, rh = max(1, min(nw, round(ow * r))), max(1, min(nh, round(oh * r)))  # a 1x5000 strip keeps a row
    if spec.resize == "letterbox" and spec.pad_align == "center":
        top, left = round((nh - rh) / 2 - 0.1), round((nw - rw) / 2 - 0.1)  # Ultralytics' rounding
    else:
        top, left = 0, 0
    return Meta(oh, ow, nh, nw, rw / ow, rh / oh, float(left), float(top)), (rh, rw)


def resize(image: np.ndarray, spec: PreprocessSpec, size_hw: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size_hw`` the way the spec's convention does it: center-crop (torchvision, timm, PIL)
    shrinks with an antialiasing triangle filter (:func:`resize_antialiased`, PIL's bilinear); everything else,
    and every enlargement, uses OpenCV's INTER_LINEAR (Ultralytics' letterbox and most detector pipelines)."""
    h, w = size_hw
    if (h, w) == image.shape[:2]:
        return image
    if spec.resize == "center-crop" and (h < image.shape[0] or w < image.shape[1]):
        return resize_antialiased(image, size_hw)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _triangle_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's bilinear resampling coefficients along one axis: for each output pixel, the input pixels it reads
    (``[out, taps]``, clamped) and their weights (a triangle as wide as the scale factor, normalized)."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = stretch  # the triangle's half-width: 1 input pixel, times the shrink factor
    taps = math.ceil(support) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    stop = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    index = first[:, None] + np.arange(taps)[None, :]
    weight = 1.0 - np.abs((index - centers[:, None] + 0.5) / stretch)
    weight = np.where((index < stop[:, None]) & (weight > 0), weight, 0.0)
    weight /= weight.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1), weight.astype(np.float32)


def resize_antialiased(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A uint8 image resized to ``size_hw`` as PIL's ``Image.resize(..., BILINEAR)`` does (what torchvision's
    ``Resize`` runs on PIL images): separable triangle filter, horizontal pass then vertical, each rounded to
    uint8 (PIL's intermediate); equal to PIL within one grey level."""
    img = image if image.ndim == 3 else image[:, :, None]
    h, w = size_hw
    index, weight = _triangle_taps(img.shape[1], w)
    rows = np.einsum("hwkc,wk->hwc", img[:, index].astype(np.float32), weight)
    rows = np.clip(np.rint(rows), 0, 255).astype(np.uint8)
    index, weight = _triangle_taps(img.shape[0], h)
    out = np.einsum("hkwc,hk->hwc", rows[index].astype(np.float32), weight)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out if image.ndim == 3 else out[:, :, 0]


def preprocess(
    image: np.ndarray,
    spec: PreprocessSpec,
    input_shape: tuple[int, ...],
    out: np.ndarray | None = None,
    *,
    profile: Mapping[str, Sequence[int]] | None = None,
) -> tuple[np.ndarray, Meta]:
    """One image (HxW[xC] uint8, BGR) to a ``[1, C, H, W]`` (or NHWC) tensor and its :class:`Meta`.

    ``input_shape`` is the model input's shape (``-1`` for dynamic axes) and ``profile`` its optimization
    profile (``{"min", "opt", "max"}``), which size dynamic axes (:func:`network_size`). ``out``, when given,
    is a preallocated tensor of the right shape and dtype that is filled in place.

    Only the resize touches full-size pixels: the resized image is split into planes, and each plane is
    scaled (``x * scale / std - mean / std``, in float32) straight into its place in ``out``; the padding is
    filled with the transformed ``pad_value``. No padded canvas, colour-converted or float copy is made.
    """
    img = _pixels(image)
    oh, ow = img.shape[:2]
    nh, nw = network_size(spec, input_shape, (oh, ow), profile)
    meta, (rh, rw) = geometry(spec, (oh, ow), (nh, nw))
    resized = resize(img, spec, (rh, rw))
    if spec.resize == "center-crop":  # cut the centre out of the resized image
        cy, cx = int(-meta.pad_y), int(-meta.pad_x)
        resized = resized[cy : cy + nh, cx : cx + nw]
        rh, rw = nh, nw
        top, left = 0, 0
    else:
        top, left = int(meta.pad_y), int(meta.pad_x)

    dtype = np.dtype(spec.dtype)
    shape = (1, 3, nh, nw) if spec.layout == "nchw" else (1, nh, nw, 3)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise ConfigError(f"preprocess: output buffer has shape {out.shape} {out.dtype}, expected {shape} {dtype}")
    planes = _planes(resized)
    if spec.color == "rgb":
        planes = planes[::-1]
    if dtype == np.uint8:
        mul = add = None
        pad: np.ndarray = np.full(3, spec.pad_value, dtype=np.uint8)
    else:
        mul = np.asarray([spec.scale / s for s in spec.std], dtype=np.float32)
        add = np.asarray([-m / s for m, s in zip(spec.mean, spec.std)], dtype=np.float32)
        pad = np.full(3, spec.pad_value, dtype=np.float32) * mul + add
    body = (slice(top, top + rh), slice(left, left + rw))
    tmp = np.empty((rh, rw), np.float32) if dtype not in (np.uint8, np.float32) else None
    for c in range(3):
        view = out[0, c] if spec.layout == "nchw" else out[0, :, :, c]
        dst = view[body]
        if mul is None or add is None:
            np.copyto(dst, planes[c])
        elif tmp is None:
            np.multiply(planes[c], mul[c], out=dst)
            if add[c] != 0:
                np.add(dst, add[c], out=dst)
        else:  # float16: compute in float32 as the reference does, then round once
            np.multiply(planes[c], mul[c], out=tmp)
            tmp += add[c]
            dst[...] = tmp
        value = pad[c]
        view[:top] = value
        view[top + rh :] = value
        view[body[0], :left] = value
        view[body[0], left + rw :] = value
    return out, meta


def _pixels(image: np.ndarray) -> np.ndarray:
    """``image`` if it is a uint8 gray, BGR or BGRA picture (converted after resizing, which is cheaper);
    else :func:`to_bgr` converts it or raises the error that says what is wrong."""
    if isinstance(image, np.ndarray) and image.size == 0:
        raise ConfigError(f"image: empty picture (shape {tuple(image.shape)}); give an HxW, HxWx3 or HxWx4 image")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
            return image
        if image.ndim == 3 and image.shape[2] == 1:
            return image.reshape(image.shape[:2])
    return to_bgr(image)


def _planes(image: np.ndarray) -> tuple[np.ndarray, ...]:
    """The B, G, R planes of a gray, BGR or BGRA image."""
    if image.ndim == 2:
        return (image, image, image)
    planes = tuple(cv2.split(image))
    return planes[:3]
