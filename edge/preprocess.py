"""Images to input tensors, from a :class:`~edge.spec.PreprocessSpec`: the one implementation.

The builder's calibration and accuracy gate, ``edge infer``, the pipeline and the HTTP API all call
:func:`preprocess`; :class:`Meta` maps results back to original-image pixels
(``x_orig = (x_net - pad_x) / scale_x``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ConfigError, SourceError
from edge.spec import PreprocessSpec


@dataclass(frozen=True)
class Meta:
    """Where the original image sits inside the network input."""

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
    if not p.is_file():
        raise SourceError(f"{p}: image file not found")
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        raise SourceError(f"{p}: image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"{p}: not a readable image (OpenCV could not decode it); give a JPEG, PNG or BMP file")
    return to_bgr(image, str(p))


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


def network_size(spec: PreprocessSpec, input_shape: tuple[int, ...], image_hw: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) fed to the network for an image of ``image_hw``."""
    if spec.size is not None:
        return spec.size
    h, w = (input_shape[2], input_shape[3]) if spec.layout == "nchw" else (input_shape[1], input_shape[2])
    if h > 0 and w > 0:
        return h, w
    s = spec.stride
    return -(-image_hw[0] // s) * s, -(-image_hw[1] // s) * s


def preprocess(
    image: np.ndarray,
    spec: PreprocessSpec,
    input_shape: tuple[int, ...],
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Meta]:
    """One image (HxW[xC] uint8, BGR) to a ``[1, C, H, W]`` (or NHWC) tensor and its :class:`Meta`.

    ``out``, when given, is a preallocated tensor of the right shape and dtype that is filled in place.
    """
    img = to_bgr(image)
    oh, ow = img.shape[:2]
    nh, nw = network_size(spec, input_shape, (oh, ow))
    if spec.resize == "stretch":
        sx, sy, px, py = nw / ow, nh / oh, 0.0, 0.0
        resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (oh, ow) else img
        canvas = resized
    else:
        r = min(nh / oh, nw / ow) if spec.resize == "letterbox" else 1.0
        rw, rh = min(nw, round(ow * r)), min(nh, round(oh * r))
        resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != (oh, ow) else img
        if spec.resize == "letterbox":
            px, py = (nw - rw) / 2, (nh - rh) / 2
        else:
            px, py = 0.0, 0.0
        top, left = round(py - 0.1), round(px - 0.1)
        canvas = cv2.copyMakeBorder(
            resized[:nh, :nw],
            top,
            nh - min(rh, nh) - top,
            left,
            nw - min(rw, nw) - left,
            cv2.BORDER_CONSTANT,
            value=(spec.pad_value,) * 3,
        )
        px, py = float(left), float(top)
        sx, sy = rw / ow, rh / oh
    if spec.color == "rgb":
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    dtype = np.dtype(spec.dtype)
    if dtype == np.uint8:
        pixels = canvas
    else:
        mul = np.asarray([spec.scale / s for s in spec.std], dtype=np.float32)
        add = np.asarray([-m / s for m, s in zip(spec.mean, spec.std)], dtype=np.float32)
        pixels = canvas.astype(np.float32)
        pixels *= mul
        pixels += add
    shape = (1, 3, nh, nw) if spec.layout == "nchw" else (1, nh, nw, 3)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise ConfigError(f"preprocess: output buffer has shape {out.shape} {out.dtype}, expected {shape} {dtype}")
    if spec.layout == "nchw":
        out[0] = pixels.transpose(2, 0, 1)
    else:
        out[0] = pixels
    return out, Meta(oh, ow, nh, nw, sx, sy, px, py)
