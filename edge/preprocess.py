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

    Only the resize touches full-size pixels: the resized image is split into planes, and each plane is
    scaled (``x * scale / std - mean / std``, in float32) straight into its place in ``out``; the padding is
    filled with the transformed ``pad_value``. No padded canvas, colour-converted or float copy is made.
    """
    img = _pixels(image)
    oh, ow = img.shape[:2]
    nh, nw = network_size(spec, input_shape, (oh, ow))
    if spec.resize == "stretch":
        rw, rh, top, left = nw, nh, 0, 0
    else:
        r = min(nh / oh, nw / ow) if spec.resize == "letterbox" else 1.0
        rw, rh = max(1, min(nw, round(ow * r))), max(1, min(nh, round(oh * r)))  # a 1x5000 strip keeps a row
        if spec.resize == "letterbox":
            top, left = round((nh - rh) / 2 - 0.1), round((nw - rw) / 2 - 0.1)
        else:
            top, left = 0, 0
    resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != (oh, ow) else img
    meta = Meta(oh, ow, nh, nw, rw / ow, rh / oh, float(left), float(top))

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
