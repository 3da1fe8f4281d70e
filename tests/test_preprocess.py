"""edge.preprocess against a straightforward reference, OpenCV's blobFromImage, and hand-checked Meta maps."""

from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.preprocess import Meta, load_image, preprocess, to_bgr
from edge.spec import PreprocessSpec


def reference(image: np.ndarray, spec: PreprocessSpec, net_hw: tuple[int, int]) -> tuple[np.ndarray, Meta]:
    """The obvious implementation: BGR, resize, pad a canvas, convert colour, float, normalize, transpose."""
    img = to_bgr(image)
    oh, ow = img.shape[:2]
    nh, nw = net_hw
    if spec.resize == "stretch":
        canvas = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (oh, ow) else img
        sx, sy, px, py = nw / ow, nh / oh, 0.0, 0.0
    else:
        r = min(nh / oh, nw / ow) if spec.resize == "letterbox" else 1.0
        rw, rh = min(nw, round(ow * r)), min(nh, round(oh * r))
        resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != (oh, ow) else img
        top, left = (round((nh - rh) / 2 - 0.1), round((nw - rw) / 2 - 0.1)) if spec.resize == "letterbox" else (0, 0)
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


@pytest.mark.parametrize(
    ("resize", "color", "layout", "norm", "kind"),
    list(
        itertools.product(
            ("letterbox", "stretch", "none"), ("bgr", "rgb"), ("nchw", "nhwc"), NORMS, ("bgr", "gray", "gray1", "bgra")
        )
    ),
)
def test_matches_reference(resize: str, color: str, layout: str, norm: str, kind: str) -> None:
    for i, (h, w, net) in enumerate(SIZES):
        image = photo(h, w, kind, seed=i)
        spec = PreprocessSpec(
            input="x", resize=resize, color=color, layout=layout, size=net, pad_value=7 * i, **NORMS[norm]
        )  # type: ignore[arg-type]
        got, meta = preprocess(image, spec, (1, 3, -1, -1))
        want, want_meta = reference(image, spec, net)
        assert got.dtype == want.dtype and got.shape == want.shape
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


@pytest.mark.parametrize("resize", ["letterbox", "stretch", "none"])
@pytest.mark.parametrize("hw", [(333, 517), (517, 333), (97, 131)])
def test_painted_rectangle_maps_back(resize: str, hw: tuple[int, int]) -> None:
    """A white rectangle found in the network tensor maps back onto where it was painted (within a pixel)."""
    image = np.zeros((*hw, 3), np.uint8)
    x1, y1, x2, y2 = hw[1] // 4, hw[0] // 3, hw[1] // 2, hw[0] * 3 // 4
    image[y1:y2, x1:x2] = 255
    spec = PreprocessSpec(input="x", resize=resize, size=(256, 320), pad_value=0)
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
