"""edge.spec and edge.manifest: round trips, validation, and the bundle file checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge.errors import BundleError, ConfigError
from edge.manifest import Artifact, Manifest, TensorSpec, read_manifest, sha256_file, verify_file
from edge.spec import PostprocessSpec, PreprocessSpec


def make_manifest(model_sha: str = "0" * 64, size: int = 0) -> Manifest:
    return Manifest(
        name="face",
        source="face.onnx",
        source_sha256="f" * 64,
        precision="fp16",
        inputs=[
            TensorSpec(
                "input",
                "float32",
                (1, 3, -1, -1),
                {"min": (1, 3, 320, 320), "opt": (1, 3, 640, 640), "max": (1, 3, 1088, 1920)},
            )
        ],
        outputs=[TensorSpec("loc", "float32", (1, -1, 4))],
        preprocess=PreprocessSpec(input="input", resize="none", color="bgr", scale=1.0, mean=(104, 117, 127)),
        postprocess=PostprocessSpec(task="detect", decoder="retinaface", labels=("face",), score_threshold=0.9),
        artifacts=[Artifact("model.onnx", "onnxruntime", "fp16", ("any",), model_sha, size)],
        builder={"edge_version": "0.1.0"},
    )


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    manifest = make_manifest()
    manifest.write(tmp_path)
    again = read_manifest(tmp_path)
    assert again == manifest
    assert json.loads((tmp_path / "manifest.json").read_text())["schema_version"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".manifest-")]


def test_preprocess_spec_round_trip_and_single_value_mean() -> None:
    spec = PreprocessSpec.from_dict({"input": "x", "mean": [0.5], "std": [0.25, 0.25, 0.25], "size": [480, 640]})
    assert spec.mean == (0.5, 0.5, 0.5)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_new_preprocess_fields_are_written_only_when_used() -> None:
    """crop_fraction and pad_align appear in the manifest only when they matter, so a bundle that does not
    use them stays readable by runtimes that predate them (they refuse unknown keys)."""
    plain = PreprocessSpec(input="x").to_dict()
    assert "crop_fraction" not in plain and "pad_align" not in plain
    crop = PreprocessSpec(input="x", resize="center-crop", crop_fraction=0.95, pad_align="topleft")
    d = crop.to_dict()
    assert (d["crop_fraction"], d["pad_align"]) == (0.95, "topleft")
    assert PreprocessSpec.from_dict(d) == crop


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"input": "x", "resize": "crop"},
            "preprocess.resize: 'crop' is not one of letterbox, stretch, center-crop, none",
        ),
        ({"input": "x", "crop_fraction": 1.5}, "preprocess.crop_fraction: must be <= 1.0"),
        ({"input": "x", "crop_fraction": 0}, "preprocess.crop_fraction: expected a fraction in (0, 1]"),
        ({"input": "x", "pad_align": "bottom"}, "preprocess.pad_align: 'bottom' is not one of center, topleft"),
        ({"input": "x", "pad_value": 300}, "preprocess.pad_value: must be <= 255"),
        ({"input": "x", "std": [1, 0, 1]}, "preprocess.std: values must be non-zero"),
        ({"input": "x", "mean": [1, 2]}, "preprocess.mean: expected one or three numbers"),
        ({"input": "x", "size": [640]}, "preprocess.size: expected [height, width]"),
        ({"input": "x", "colour": "rgb"}, "preprocess.colour: unknown key"),
        ({}, "preprocess.input: required key is missing"),
    ],
)
def test_preprocess_spec_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PreprocessSpec.from_dict(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"task": "depth"}, "postprocess.task: 'depth' is not one of detect, segment, pose, obb, classify, raw"),
        ({"task": "detect"}, "postprocess.decoder: a detect task needs a decoder"),
        ({"task": "detect", "decoder": "yolov8", "score_threshold": 2}, "postprocess.score_threshold: must be <= 1.0"),
    ],
)
def test_postprocess_spec_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PostprocessSpec.from_dict(data)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=7), "schema_version 7 is not supported by this runtime"),
        (lambda d: d.pop("artifacts"), "invalid manifest: artifacts: required key is missing"),
        (lambda d: d["artifacts"][0].update(backend="tflite"), "artifacts[0].backend: 'tflite' is not one of"),
        (lambda d: d.update(extra=1), "invalid manifest: extra: unknown key"),
    ],
)
def test_invalid_manifests_are_bundle_errors(tmp_path: Path, mutate: object, message: str) -> None:
    data = make_manifest().to_dict()
    mutate(data)  # type: ignore[operator]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=re.escape(message)):
        read_manifest(tmp_path)


def test_missing_and_corrupt_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(BundleError, match="not a bundle directory"):
        read_manifest(tmp_path / "nope.bundle")


def test_verify_file_checks_presence_and_sha256(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    digest = sha256_file(tmp_path / "model.onnx")
    assert verify_file(tmp_path, "model.onnx", digest) == tmp_path / "model.onnx"
    with pytest.raises(BundleError, match="does not match the manifest"):
        verify_file(tmp_path, "model.onnx", "a" * 64)
    with pytest.raises(BundleError, match="listed in manifest.json but missing"):
        verify_file(tmp_path, "engine.plan", digest)
