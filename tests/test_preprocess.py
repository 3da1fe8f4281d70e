"""edge.preprocess against a straightforward reference, OpenCV's blobFromImage, and hand-checked Meta maps."""

from __future__ import annotations

import itertools
import math
import os

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.preprocess import Meta, load_image, preprocess, to_bgr
from edge.spec import PreprocessSpec


def reference(image: np.ndarray, spec: PreprocessSpec, net_hw: tuple[int, int]) -> tuple[np.ndarray, Meta]:
    """The obvious implementation: BGR, resize, pad a canvas (or crop), convert colour, float, normalize, transpose."""
    img = to_bgr(image)
    oh, ow = img.shape[:2]
    nh, nw = net_hw
    if spec.resize == "stretch":
        canvas = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (oh, ow) else img
        sx, sy, px, py = nw / ow, nh / oh, 0.0, 0.0
    elif spec.resize == "center-crop":
        # torchvision: Resize(floor(size / F)) on the shorter side (the longer one int(short' * long / short)),
        # then CenterCrop(size) at int(round((resized - size) / 2))
        short = math.floor(nh / spec.crop_fraction)
        rh, rw = (short, int(short * ow / oh)) if oh <= ow else (int(short * oh / ow), short)
        if rh < oh or rw < ow:  # torchvision shrinks PIL images with PIL's antialiasing bilinear filter
            from PIL import Image

            pil = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).resize((rw, rh), Image.Resampling.BILINEAR)
            resized = np.ascontiguousarray(np.asarray(pil)[:, :, ::-1])
        else:
            resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != (oh, ow) else img
        top, left = round((rh - nh) / 2.0), round((rw - nw) / 2.0)
        canvas = resized[top : top + nh, left : left + nw]
        sx, sy, px, py = rw / ow, rh / oh, float(-left), float(-top)
    else:
        r = min(nh / oh, nw / ow) if spec.resize == "letterbox" else min(1.0, nh / oh, nw / ow)
        rw, rh = min(nw, round(ow * r)), min(nh, round(oh * r))
        resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != (oh, ow) else img
        centred = spec.resize == "letterbox" and spec.pad_align == "center"
        top, left = (round((nh - rh) / 2 - 0.1), round((nw - rw) / 2 - 0.1)) if centred else (0, 0)
        canvas = cv2.copyMakeBorder(
            resized, top, nh - rh - top, left, nw - rw - left, cv2.BORDER_CONSTANT, value=(spec.pad_value,) * 3
        )
        sx, sy, px, py = rw / ow, rh / oh, float(left), float(top)
    if spec.color == "rgb":
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    if spec.dtype == "uint8":
        pixels = canvas
    else:
        pixels = canvas.astype(np.float32)
        pixels *= np.asarray([spec.scale / s for s in spec.std], dtype=np.float32)
        pixels += np.asarray([-m / s for m, s in zip(spec.mean, spec.std)], dtype=np.float32)
    tensor = (pixels.transpose(2, 0, 1) if spec.layout == "nchw" else pixels)[None].astype(spec.dtype)
    return tensor, Meta(oh, ow, nh, nw, sx, sy, px, py)


def photo(h: int, w: int, kind: str, seed: int = 0) -> np.ndarray:
    """A smooth random picture (so resizing matters) as gray (HxW or HxWx1), BGR or BGRA uint8."""
    rng = np.random.default_rng(seed)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    if kind == "gray":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if kind == "gray1":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    if kind == "bgra":
        return np.dstack([bgr, rng.integers(0, 256, (h, w), dtype=np.uint8)])
    return bgr


NORMS = {
    "unit": {"scale": 1 / 255},
    "imagenet": {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "retinaface": {"scale": 1.0, "mean": (104.0, 117.0, 127.0)},
    "uint8": {"dtype": "uint8"},
    "float16": {"dtype": "float16", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}
SIZES = [(67, 101, (64, 96)), (120, 90, (64, 64)), (50, 40, (64, 96)), (64, 96, (64, 96))]  # h, w, net (h, w)


RESIZES = ("letterbox", "letterbox-topleft", "stretch", "center-crop", "none")


@pytest.mark.parametrize(
    ("resize", "color", "layout", "norm", "kind"),
    list(itertools.product(RESIZES, ("bgr", "rgb"), ("nchw", "nhwc"), NORMS, ("bgr", "gray", "gray1", "bgra"))),
)
def test_matches_reference(resize: str, color: str, layout: str, norm: str, kind: str) -> None:
    mode = resize.removesuffix("-topleft")
    for i, (h, w, net) in enumerate(SIZES):
        image = photo(h, w, kind, seed=i)
        if mode == "center-crop":  # the reference knows torchvision's square crop only
            net = (net[0], net[0])
        spec = PreprocessSpec(
            input="x",
            resize=mode,
            color=color,
            layout=layout,
            size=net,
            pad_value=7 * i,
            pad_align="topleft" if resize.endswith("-topleft") else "center",
            crop_fraction=(0.875, 1.0, 0.5, 0.95)[i],
            **NORMS[norm],  # type: ignore[arg-type]
        )
        got, meta = preprocess(image, spec, (1, 3, -1, -1))
        want, want_meta = reference(image, spec, net)
        assert got.dtype == want.dtype and got.shape == want.shape
        if mode == "center-crop":  # shrinking: our triangle filter vs PIL's fixed-point one, within a grey level
            level = 1.0 if spec.dtype == "uint8" else max(spec.scale / s for s in spec.std) * 1.01 + 2e-3
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
            assert diff.max() <= level and diff.mean() <= 0.05 * level, (diff.max(), diff.mean())
        else:
            np.testing.assert_array_equal(got, want)
        assert meta == want_meta


def test_letterbox_1080p_equals_blob_from_image() -> None:
    frame = photo(1080, 1920, "bgr")
    spec = PreprocessSpec(input="images", size=(640, 640))
    got, meta = preprocess(frame, spec, (1, 3, 640, 640))
    resized = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    boxed = cv2.copyMakeBorder(resized, 140, 140, 0, 0, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    np.testing.assert_array_equal(got, cv2.dnn.blobFromImage(boxed, 1 / 255, (640, 640), swapRB=True))
    assert meta == Meta(1080, 1920, 640, 640, 1 / 3, 1 / 3, 0.0, 140.0)


def test_preallocated_buffer_is_filled_completely() -> None:
    spec = PreprocessSpec(input="x", size=(64, 64))
    out = np.full((1, 3, 64, 64), np.nan, dtype=np.float32)
    got, _ = preprocess(photo(30, 50, "bgr"), spec, (1, 3, 64, 64), out=out)
    assert got is out and not np.isnan(out).any()
    np.testing.assert_array_equal(out, reference(photo(30, 50, "bgr"), spec, (64, 64))[0])


def test_dynamic_size_rounds_up_to_stride() -> None:
    spec = PreprocessSpec(input="x", resize="none", stride=32)
    tensor, meta = preprocess(photo(70, 100, "bgr"), spec, (1, 3, -1, -1))
    assert tensor.shape == (1, 3, 96, 128)
    assert (meta.pad_x, meta.pad_y, meta.scale_x, meta.scale_y) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("image", "out", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), None, "empty"),
        (np.zeros((10, 10, 3), np.float32), None, "uint8"),
        (np.zeros((10, 10, 5), np.uint8), None, "shape"),
        ([[1, 2], [3, 4]], None, "numpy array"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((1, 3, 32, 32), np.float16), "output buffer"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((1, 3, 16, 32), np.float32), "output buffer"),
    ],
)
def test_bad_input(image: object, out: np.ndarray | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preprocess(image, PreprocessSpec(input="x", size=(32, 32)), (1, 3, 32, 32), out=out)  # type: ignore[arg-type]


def test_uint16_input_uses_high_byte() -> None:
    image16 = photo(40, 40, "bgr").astype(np.uint16) << 8
    spec = PreprocessSpec(input="x", size=(32, 32))
    np.testing.assert_array_equal(
        preprocess(image16, spec, (1, 3, 32, 32))[0], preprocess(photo(40, 40, "bgr"), spec, (1, 3, 32, 32))[0]
    )


# Meta.to_original, hand-checked. 1001x667 letterboxed into 640x640: r = 640/1001, rw = 640,
# rh = round(667 * 640 / 1001) = round(426.45) = 426, top = round((640 - 426) / 2 - 0.1) = 107,
# so scale_x = 640/1001, scale_y = 426/667; the network centre (320, 320) is the original centre (500.5, 333.5).
@pytest.mark.parametrize(
    ("resize", "hw", "net", "meta", "net_box", "orig_box"),
    [
        (
            "letterbox",
            (667, 1001),
            (640, 640),
            (640 / 1001, 426 / 667, 0, 107),
            [320, 320, 320, 320],
            [500.5, 333.5] * 2,
        ),
        ("letterbox", (667, 1001), (640, 640), (640 / 1001, 426 / 667, 0, 107), [0, 107, 640, 533], [0, 0, 1001, 667]),
        ("letterbox", (667, 1001), (640, 640), (640 / 1001, 426 / 667, 0, 107), [-9, 0, 700, 640], [0, 0, 1001, 667]),
        # portrait 333x777 (w x h) into 640x640: rh = 640, rw = round(333 * 640 / 777) = round(274.29) = 274,
        # left = round(183 - 0.1) = 183; x = 183 + 274 maps to the right edge 333
        ("letterbox", (777, 333), (640, 640), (274 / 333, 640 / 777, 183, 0), [183, 0, 457, 640], [0, 0, 333, 777]),
        (
            "letterbox",
            (777, 333),
            (640, 640),
            (274 / 333, 640 / 777, 183, 0),
            [320, 320, 320, 320],
            [(137 * 333 / 274), 388.5] * 2,
        ),
        # odd padding: 100x51 (w x h) into 64x64: rw = 64, rh = round(51 * 0.64) = round(32.64) = 33, pad 31 -> top 15
        ("letterbox", (51, 100), (64, 64), (0.64, 33 / 51, 0, 15), [32, 15, 64, 48], [50, 0, 100, 51]),
        (
            "stretch",
            (667, 1001),
            (640, 640),
            (640 / 1001, 640 / 667, 0, 0),
            [320, 320, 640, 640],
            [500.5, 333.5, 1001, 667],
        ),
        ("none", (70, 101), (96, 128), (1.0, 1.0, 0, 0), [10.5, 20.25, 200, 90], [10.5, 20.25, 101, 70]),
    ],
)
def test_meta_to_original(
    resize: str,
    hw: tuple[int, int],
    net: tuple[int, int],
    meta: tuple[float, float, float, float],
    net_box: list[float],
    orig_box: list[float],
) -> None:
    spec = PreprocessSpec(input="x", resize=resize, size=net)
    _, m = preprocess(np.zeros((*hw, 3), np.uint8), spec, (1, 3, *net))
    assert (m.orig_h, m.orig_w, m.net_h, m.net_w) == (*hw, *net)
    np.testing.assert_allclose((m.scale_x, m.scale_y, m.pad_x, m.pad_y), meta)
    np.testing.assert_allclose(m.to_original(np.array([net_box])), [orig_box], rtol=1e-5, atol=1e-3)
    # keypoints ([..., 2k] x, y pairs) map the same way
    np.testing.assert_allclose(m.to_original(np.array([net_box * 2])), [orig_box * 2], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("resize", ["letterbox", "letterbox-topleft", "stretch", "center-crop", "none"])
@pytest.mark.parametrize("hw", [(333, 517), (517, 333), (97, 131)])
def test_painted_rectangle_maps_back(resize: str, hw: tuple[int, int]) -> None:
    """A white rectangle found in the network tensor maps back onto where it was painted (within a pixel)."""
    image = np.zeros((*hw, 3), np.uint8)
    x1, y1, x2, y2 = hw[1] * 3 // 8, hw[0] * 3 // 8, hw[1] * 5 // 8, hw[0] * 5 // 8  # inside any centre crop
    image[y1:y2, x1:x2] = 255
    align = "topleft" if resize.endswith("-topleft") else "center"
    spec = PreprocessSpec(
        input="x", resize=resize.removesuffix("-topleft"), size=(256, 320), pad_value=0, pad_align=align
    )
    tensor, meta = preprocess(image, spec, (1, 3, 256, 320))
    ys, xs = np.nonzero(tensor[0, 0] > 0.5)
    found = meta.to_original(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32))[0]
    tolerance = 1.0 / min(meta.scale_x, meta.scale_y) + 0.5
    np.testing.assert_allclose(found, [x1, y1, x2, y2], atol=tolerance)


def test_load_image(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    cv2.imwrite(str(folder / "gray.png"), photo(20, 30, "gray"))
    assert load_image(folder / "gray.png").shape == (20, 30, 3)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "junk.jpg").write_bytes(b"not an image")
    (folder / "photos").mkdir()
    for name, message in [
        ("missing.jpg", "not found"),
        ("empty.jpg", "empty"),
        ("junk.jpg", "not a readable image"),
        ("photos", "is a directory, not an image file"),
    ]:
        with pytest.raises(SourceError, match=message):
            load_image(folder / name)


def test_load_image_without_read_permission() -> None:
    """A file with mode 0 cannot be read. Root (as in CI) reads it anyway, so the check runs in a forked
    child that has dropped to the ``nobody`` user, and reports the error text back through a pipe."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="edge-perm-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        path = folder / "locked.png"
        cv2.imwrite(str(path), photo(20, 30, "gray"))
        path.chmod(0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody (when root), try to load, report, exit without cleanup
            os.close(read_end)
            text = "no error"
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                load_image(path)
            except SourceError as exc:
                text = str(exc)
            except BaseException as exc:
                text = f"{type(exc).__name__}: {exc}"
            os.write(write_end, text.encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            message = f.read().decode()
        os.waitpid(pid, 0)
    finally:
        shutil.rmtree(folder)
    assert message == f"{path}: cannot read the image file (Permission denied)"


@pytest.mark.parametrize("view", ["flipped", "roi", "fortran", "channels reversed"])
@pytest.mark.parametrize("resized", [True, False])
def test_array_views(view: str, resized: bool) -> None:
    """Crops, flips and other non-contiguous views give the same tensor as their contiguous copy."""
    image = photo(100, 150, "bgr")
    im = {
        "flipped": image[:, ::-1],
        "roi": image[10:80, 20:120],
        "fortran": np.asfortranarray(image),
        "channels reversed": image[:, :, ::-1],
    }[view]
    size = (64, 96) if resized else im.shape[:2]
    spec = PreprocessSpec(input="x", size=size)
    got, _ = preprocess(im, spec, (1, 3, *size))
    np.testing.assert_array_equal(got, reference(np.ascontiguousarray(im), spec, size)[0])


def test_extreme_aspect_keeps_one_row() -> None:
    """A 1x5000 strip letterboxed into 64x64 is one row high, not zero (OpenCV cannot resize to 0 rows)."""
    tensor, meta = preprocess(
        np.full((1, 5000, 3), 200, np.uint8), PreprocessSpec(input="x", size=(64, 64)), (1, 3, 64, 64)
    )
    assert (meta.scale_x, meta.scale_y, meta.pad_y) == (64 / 5000, 1.0, 31.0)
    np.testing.assert_allclose(tensor[0, 0, 31], 200 / 255, rtol=1e-6)  # the strip
    np.testing.assert_allclose(tensor[0, 0, [30, 32]], 114 / 255, rtol=1e-6)  # padding above and below


# Center-crop geometry, hand-worked with torchvision's rules (Resize(int) sets the shorter side to
# floor(size / F) and the longer to int(short' * long / short); CenterCrop's corner is
# int(round((resized - size) / 2)), Python's round-half-even):
# - 500x375 (w x h) landscape, 224, F 0.875: short 375 -> 256, long int(256 * 500 / 375) = int(341.33) = 341;
#   top round(32 / 2) = 16, left round(117 / 2) = round(58.5) = 58.
# - 480x640 portrait, 224, F 1.0: short 480 -> 224, long int(224 * 640 / 480) = int(298.67) = 298;
#   top round(74 / 2) = 37, left 0.
# - 320x256 (w x h), 224, F 0.875: short 256 -> 256 (no resize), long 320; top 16, left 48.
# - 400x300, 288, timm crop_pct 0.95: short floor(288 / 0.95) = floor(303.16) = 303, long int(303 * 4 / 3) = 404;
#   top round(15 / 2) = round(7.5) = 8, left round(116 / 2) = 58.
CROPS = [
    ((375, 500), 224, 0.875, (341, 256, 58, 16)),
    ((640, 480), 224, 1.0, (224, 298, 0, 37)),
    ((256, 320), 224, 0.875, (320, 256, 48, 16)),
    ((300, 400), 288, 0.95, (404, 303, 58, 8)),
]


@pytest.mark.parametrize(("hw", "size", "fraction", "want"), CROPS)
def test_center_crop_geometry(hw: tuple[int, int], size: int, fraction: float, want: tuple[int, int, int, int]) -> None:
    rw, rh, left, top = want
    spec = PreprocessSpec(input="x", resize="center-crop", size=(size, size), crop_fraction=fraction)
    tensor, meta = preprocess(np.zeros((*hw, 3), np.uint8), spec, (1, 3, size, size))
    assert tensor.shape == (1, 3, size, size)
    assert meta == Meta(hw[0], hw[1], size, size, rw / hw[1], rh / hw[0], float(-left), float(-top))
    # the network's corners map back to the crop's corners in the original image
    corners = meta.to_original(np.array([[0, 0, size, size]], np.float32))[0]
    np.testing.assert_allclose(
        corners,
        [left * hw[1] / rw, top * hw[0] / rh, (left + size) * hw[1] / rw, (top + size) * hw[0] / rh],
        rtol=1e-6,
    )


def test_torchvision_preset_without_resampling_equals_a_numpy_slice() -> None:
    """320x256 into 224 at F 0.875 needs no resize (the shorter side is already 256), so the tensor is exactly
    the centre slice [16:240, 48:272], RGB, (x / 255 - mean) / std with torchvision's ImageNet constants."""
    from edge.spec import preset

    bgr = photo(256, 320, "bgr", seed=3)
    spec = PreprocessSpec(input="x", size=(224, 224), **preset("torchvision"))
    got, _ = preprocess(bgr, spec, (1, 3, 224, 224))
    rgb = bgr[16:240, 48:272, ::-1].astype(np.float64) / 255.0
    want = (rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), want, atol=2e-6)


def test_center_crop_upscale_close_to_pil() -> None:
    """An independent resampler: PIL's bilinear resize + crop of a smooth 150x200 photo (upscaled to short side
    256, so PIL's antialiasing does not apply) agrees with ours within a couple of grey levels."""
    from PIL import Image

    bgr = photo(150, 200, "bgr", seed=5)
    spec = PreprocessSpec(input="x", resize="center-crop", size=(224, 224), scale=1.0, color="rgb")
    got, _ = preprocess(bgr, spec, (1, 3, 224, 224))
    pil = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).resize((341, 256), Image.Resampling.BILINEAR)
    left, top = round((341 - 224) / 2.0), round((256 - 224) / 2.0)
    want = np.asarray(pil.crop((left, top, left + 224, top + 224)), np.float32)
    diff = np.abs(got[0].transpose(1, 2, 0) - want)
    assert diff.max() <= 2.0 and diff.mean() < 0.6, (diff.max(), diff.mean())


# Presets on one pixel (R 255, G 128, B 0), worked by hand from each zoo's definition:
# torchvision RGB (x/255 - mean) / std: (1 - 0.485) / 0.229, (128/255 - 0.456) / 0.224, (0 - 0.406) / 0.225
# tf RGB x / 127.5 - 1: 1, 128/127.5 - 1, -1;  yolo RGB x / 255: 1, 128/255, 0
# caffe BGR x - mean(B, G, R): 0 - 103.939, 128 - 116.779, 255 - 123.68
PRESET_TABLE = {
    "torchvision": ((1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225),
    "tf": (1.0, 128 / 127.5 - 1, -1.0),
    "yolo": (1.0, 128 / 255, 0.0),
    "caffe": (-103.939, 128 - 116.779, 255 - 123.68),
}


@pytest.mark.parametrize("name", PRESET_TABLE)
def test_presets_by_hand(name: str) -> None:
    from edge.spec import preset

    image = np.zeros((40, 60, 3), np.uint8)
    image[:] = (0, 128, 255)  # BGR: blue 0, green 128, red 255
    spec = PreprocessSpec(input="x", size=(32, 32), **preset(name))
    tensor, _ = preprocess(image, spec, (1, 3, 32, 32))
    centre = tensor[0, :, 16, 16]
    np.testing.assert_allclose(centre, PRESET_TABLE[name], rtol=1e-5, atol=1e-5)
    assert spec.resize == {"torchvision": "center-crop", "tf": "center-crop", "yolo": "letterbox"}.get(name, "stretch")


def test_letterbox_topleft_and_pad_value() -> None:
    """100x51 (w x h) into 64x64 aligned top-left: resized 64x33 at (0, 0), rows 33.. are padding (value 0)."""
    spec = PreprocessSpec(input="x", size=(64, 64), pad_align="topleft", pad_value=0, scale=1.0)
    tensor, meta = preprocess(np.full((51, 100, 3), 200, np.uint8), spec, (1, 3, 64, 64))
    assert meta == Meta(51, 100, 64, 64, 0.64, 33 / 51, 0.0, 0.0)
    assert (tensor[0, :, :33] == 200).all() and (tensor[0, :, 33:] == 0).all()
    np.testing.assert_allclose(meta.to_original(np.array([[32, 16.5, 64, 33]])), [[50, 25.5, 100, 51]])


PROFILE = {"min": (1, 3, 320, 320), "opt": (1, 3, 640, 640), "max": (4, 3, 1280, 1280)}


# network_size for a [?, 3, ?, ?] input with PROFILE (stride 32), by hand
@pytest.mark.parametrize(
    ("resize", "image_hw", "want"),
    [
        ("letterbox", (480, 640), (640, 640)),  # the opt shape, whatever the image
        ("stretch", (100, 3000), (640, 640)),
        ("center-crop", (2160, 3840), (640, 640)),
        ("none", (480, 640), (480, 640)),  # the image's own size, already a multiple of 32
        ("none", (470, 630), (480, 640)),  # rounded up to the stride
        ("none", (100, 700), (320, 704)),  # below min: padded up to it
        # 4K: scaled by 1280 / 3840 = 1/3 to 720x1280, rounded up 736x1280 (within max)
        ("none", (2160, 3840), (736, 1280)),
    ],
)
def test_network_size_in_a_profile(resize: str, image_hw: tuple[int, int], want: tuple[int, int]) -> None:
    from edge.preprocess import network_size

    spec = PreprocessSpec(input="x", resize=resize)
    assert network_size(spec, (-1, 3, -1, -1), image_hw, PROFILE) == want
    tensor, meta = preprocess(np.zeros((*image_hw, 3), np.uint8), spec, (-1, 3, -1, -1), profile=PROFILE)
    assert tensor.shape == (1, 3, *want)
    lo, hi = PROFILE["min"][2:], PROFILE["max"][2:]
    assert all(a <= n <= b for a, n, b in zip(lo, want, hi))
    if resize == "none":  # never upscaled
        assert meta.scale_x == meta.scale_y <= 1.0


def test_network_size_without_profile_and_with_fixed_sizes() -> None:
    from edge.preprocess import network_size

    spec = PreprocessSpec(input="x", resize="none", stride=32)
    assert network_size(spec, (1, 3, -1, -1), (70, 100)) == (96, 128)  # any size: rounded to the stride
    assert network_size(spec, (1, 3, 640, 480), (70, 100), PROFILE) == (640, 480)  # fixed axes win
    assert network_size(PreprocessSpec(input="x", size=(224, 224)), (1, 3, -1, -1), (70, 100), PROFILE) == (224, 224)
    nhwc = PreprocessSpec(input="x", layout="nhwc")
    assert network_size(nhwc, (-1, -1, -1, 3), (70, 100), {k: (v[0], v[2], v[3], 3) for k, v in PROFILE.items()}) == (
        640,
        640,
    )


def test_python_api_images_from_opencv_pil_and_paths(tmp_path: object) -> None:
    """A photo whose channels differ (pure red, R 255 G 30 B 0) read three ways gives one BGR array: OpenCV's
    BGR ndarray as is, PIL's RGB image swapped, and the file path read by OpenCV."""
    from pathlib import Path

    from PIL import Image

    from edge.preprocess import as_image

    path = Path(str(tmp_path)) / "red.png"
    Image.new("RGB", (6, 4), (255, 30, 0)).save(path)
    from_cv = cv2.imread(str(path))
    for name, given in [
        ("opencv", from_cv),
        ("pil", Image.open(path)),
        ("pil-rgba", Image.open(path).convert("RGBA")),
        ("path", path),
        ("str", str(path)),
    ]:
        got = as_image(given)
        assert got.shape == (4, 6, 3), name
        assert tuple(got[0, 0]) == (0, 30, 255), name  # B, G, R
    with pytest.raises(ConfigError, match="a PIL image or an image file path"):
        as_image(3.5)
    with pytest.raises(SourceError, match="not found"):
        as_image(Path(str(tmp_path)) / "missing.png")


@pytest.mark.parametrize(("hw", "out"), [((400, 600), (96, 144)), ((1080, 1920), (256, 455)), ((97, 131), (31, 64))])
def test_antialiased_shrink_equals_pil_within_a_grey_level(hw: tuple[int, int], out: tuple[int, int]) -> None:
    """torchvision's Resize on a PIL image is PIL's bilinear resize, which filters before shrinking (a triangle as
    wide as the shrink factor); ours matches it to within one grey level at 4x and 7x shrinks."""
    from PIL import Image

    from edge.preprocess import resize_antialiased

    image = photo(*hw, "bgr", seed=11)
    pil = np.asarray(Image.fromarray(image).resize(out[::-1], Image.Resampling.BILINEAR))
    got = resize_antialiased(image, out)
    diff = np.abs(got.astype(int) - pil)
    assert got.shape == (*out, 3) and diff.max() <= 1 and diff.mean() < 0.05
    plain = cv2.resize(image, out[::-1], interpolation=cv2.INTER_LINEAR)  # what an unfiltered shrink gives
    assert np.abs(plain.astype(int) - pil).max() > 1
