"""Calibration data from real photos (the runtime's preprocess) or .npy, and activation statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builders.calibration import (
    TensorStats,
    calibration_info,
    entropy_bin,
    image_files,
    load_calibration,
    split_holdout,
)
from edge.errors import BuildError
from edge.manifest import TensorSpec
from edge.preprocess import load_image, preprocess
from edge.spec import PreprocessSpec

SPEC = PreprocessSpec(input="input", color="bgr", scale=1.0, mean=(104, 117, 127), size=(320, 320), pad_value=0)
INPUT = TensorSpec("input", "float32", (-1, 3, -1, -1))


def test_images_go_through_the_runtime_preprocess(photos_dir: Path) -> None:
    samples = load_calibration(photos_dir, SPEC, INPUT)
    files = image_files(photos_dir)
    assert len(samples) == len(files) >= 5
    assert all(list(s) == ["input"] and s["input"].shape == (1, 3, 320, 320) for s in samples)
    assert all(s["input"].dtype == np.float32 for s in samples)
    camera = files.index(photos_dir / "camera.png")  # grayscale photo: three equal channels
    expected, _ = preprocess(load_image(files[camera]), SPEC, INPUT.shape)
    np.testing.assert_array_equal(samples[camera]["input"], expected)
    assert load_calibration(photos_dir, SPEC, INPUT, limit=2)[1]["input"].tobytes() == samples[1]["input"].tobytes()


def test_fixed_batch_stacks_images(photos_dir: Path) -> None:
    samples = load_calibration(photos_dir, SPEC, TensorSpec("input", "float32", (2, 3, 320, 320)), limit=5)
    assert [s["input"].shape for s in samples] == [(2, 3, 320, 320)] * 2  # the fifth image is left over


def test_npy_of_preprocessed_tensors(tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float64)
    np.save(tmp_path / "calib.npy", data)
    samples = load_calibration(tmp_path / "calib.npy", SPEC, TensorSpec("input", "float32", (-1, 3, 64, 64)), limit=4)
    assert len(samples) == 4
    assert samples[3]["input"].dtype == np.float32 and samples[3]["input"].shape == (1, 3, 64, 64)
    np.testing.assert_allclose(samples[3]["input"][0], data[3], rtol=1e-6)


def _bad_calib(tmp: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp / "nope"
    if kind == "empty":
        (tmp / "empty").mkdir()
        return tmp / "empty"
    if kind == "no-images":
        (tmp / "docs").mkdir()
        (tmp / "docs" / "notes.txt").write_text("not an image")
        return tmp / "docs"
    if kind == "corrupt":
        (tmp / "bad").mkdir()
        (tmp / "bad" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        return tmp / "bad"
    if kind == "npy-shape":
        np.save(tmp / "wrong.npy", np.zeros((4, 3, 32, 32), np.float32))
        return tmp / "wrong.npy"
    if kind == "npy-empty":
        np.save(tmp / "none.npy", np.zeros((0, 3, 320, 320), np.float32))
        return tmp / "none.npy"
    if kind == "other-file":
        (tmp / "calib.txt").write_text("a list")
        return tmp / "calib.txt"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "calibration data not found"),
        ("empty", "no images to calibrate on"),
        ("no-images", "no images to calibrate on"),
        ("corrupt", "broken.jpg: not a readable image"),
        ("npy-shape", "array of shape 4x3x32x32 does not fit input 'input' \\(\\?x3x320x320\\)"),
        ("npy-empty", "the array holds no samples"),
        ("other-file", "must be a folder of images or a .npy file"),
    ],
)
def test_bad_calibration_data(tmp_path: Path, kind: str, message: str) -> None:
    path = _bad_calib(tmp_path, kind)
    with pytest.raises(BuildError, match=message) as info:
        load_calibration(path, SPEC, TensorSpec("input", "float32", (-1, 3, 320, 320)))
    assert path.name in str(info.value)


def test_calibration_info_hashes_the_tensors(photos_dir: Path) -> None:
    samples = load_calibration(photos_dir, SPEC, INPUT, limit=3)
    info = calibration_info(photos_dir, samples, "entropy")
    assert info == {"method": "entropy", "images": 3, "data_sha256": info["data_sha256"], "source": photos_dir.name}
    assert calibration_info(photos_dir, samples[:2], "entropy")["data_sha256"] != info["data_sha256"]
    assert calibration_info(photos_dir, samples, "minmax")["data_sha256"] == info["data_sha256"]


def test_histogram_grows_by_exact_merges() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.uniform(0, 1, 5000), rng.uniform(-3, 3, 5000), rng.uniform(0, 40, 5000)]
    stats = TensorStats()
    for part in parts:
        stats.add(part.astype(np.float32))
    assert stats.amax == pytest.approx(max(np.abs(p).max() for p in parts))
    assert stats.top >= stats.amax and stats.hist.sum() == 15000
    direct, _ = np.histogram(np.abs(np.concatenate(parts)).astype(np.float32), bins=stats.bins, range=(0, stats.top))
    assert np.abs(direct - stats.hist).sum() <= 4  # only values on a bin edge may land one bin over


def test_methods_clip_outliers_differently() -> None:
    rng = np.random.default_rng(1)
    stats = TensorStats()
    x = rng.standard_normal(400_000).astype(np.float32)
    x[:20] = 60.0  # rare outliers
    stats.add(x)
    minmax, pct, ent = (stats.threshold(m) for m in ("minmax", "percentile", "entropy"))
    assert minmax == pytest.approx(60.0)
    assert 3.0 < pct < 6.0  # the 99.99th percentile of |N(0,1)| is about 3.9
    assert 3.0 < ent < 20.0  # KL keeps the body, drops the outliers
    with pytest.raises(BuildError, match="unknown calibration method"):
        stats.threshold("kl")


def test_entropy_keeps_the_full_range_of_a_uniform_distribution() -> None:
    hist = np.full(2048, 100, dtype=np.int64)
    assert entropy_bin(hist) >= 2040


def _folder_of(photos_dir: Path, tmp_path: Path, count: int) -> Path:
    """``count`` copies of the test photos under distinct names."""
    import shutil

    folder = tmp_path / f"calib{count}"
    folder.mkdir()
    photos = image_files(photos_dir)
    for i in range(count):
        src = photos[i % len(photos)]
        shutil.copy(src, folder / f"img{i:03d}{src.suffix}")
    return folder


def test_holdout_is_a_fifth_chosen_by_name_hash_and_never_calibrates(photos_dir: Path, tmp_path: Path) -> None:
    import hashlib

    folder = _folder_of(photos_dir, tmp_path, 12)
    names = sorted(p.name for p in folder.iterdir())
    split = split_holdout(folder)
    # the documented rule, recomputed here: round(12 * 20 %) = 2 names with the lowest sha256
    expected = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:2]
    assert sorted(split.validate) == sorted(expected)
    assert set(split.calibrate) == set(names) - set(expected) and len(split.calibrate) == 10
    assert split_holdout(folder) == split  # deterministic
    assert split.info(folder)["count"] == 2 and split.info(folder)["items"] == list(split.validate)
    # the limit caps the calibration images only; the held-out ones stay held out
    limited = split_holdout(folder, limit=3)
    assert limited.validate == split.validate and limited.calibrate == split.calibrate[:3]
    val = load_calibration(folder, SPEC, INPUT, subset=split.validate)
    assert len(val) == 2
    direct, _ = preprocess(load_image(folder / split.validate[0]), SPEC, INPUT.shape)
    np.testing.assert_array_equal(val[0]["input"], direct)


def test_holdout_of_npy_rows(tmp_path: Path) -> None:
    data = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    path = tmp_path / "calib.npy"
    np.save(path, data)
    split = split_holdout(path)
    assert len(split.validate) == 2 and len(split.calibrate) == 8
    spec = TensorSpec("input", "float32", (1, 3, 2, 2))
    rows = [int(item.split()[-1]) for item in split.validate]
    got = load_calibration(path, SPEC, spec, subset=split.validate)
    np.testing.assert_array_equal(np.concatenate([s["input"] for s in got]), data[rows])


def test_holdout_refuses_a_folder_too_small_to_split(photos_dir: Path, tmp_path: Path) -> None:
    one = _folder_of(photos_dir, tmp_path, 1)
    with pytest.raises(BuildError, match=r"1 item\(s\) cannot be split into calibration and held-out validation"):
        split_holdout(one)
    three = _folder_of(photos_dir, tmp_path, 3)
    with pytest.raises(BuildError, match="cannot be split"):
        split_holdout(three, batch=2)  # 2 held out for one batch of 2 leaves 1 image: not a batch
    assert len(split_holdout(three).validate) == 1
