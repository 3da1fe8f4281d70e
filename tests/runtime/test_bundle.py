"""Opening bundles: manifest validation and sha256 checks, good and bad cases in one table."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.errors import BundleError
from edge.runtime import load
from edge.runtime.bundle import Bundle
from tests.runtime.bundles import plan_artifact, write_bundle
from tests.runtime.conftest import CPU


def _ok(path: Path) -> None:
    pass


def _delete_manifest(path: Path) -> None:
    (path / "manifest.json").unlink()


def _corrupt_manifest(path: Path) -> None:
    (path / "manifest.json").write_text('{"schema_version": 1, "model": ')


def _unknown_key(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["artifacts"][0]["colour"] = "blue"
    (path / "manifest.json").write_text(json.dumps(data))


def _future_schema(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["schema_version"] = 2
    (path / "manifest.json").write_text(json.dumps(data))


def _no_artifacts(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["artifacts"] = []
    (path / "manifest.json").write_text(json.dumps(data))


def _two_hashes(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["files"]["model.onnx"]["sha256"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(data))


def _flip_a_byte(path: Path) -> None:
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "model.onnx").write_bytes(bytes(data))


def _delete_model(path: Path) -> None:
    (path / "model.onnx").unlink()


def _not_a_dir(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("a file")


# (id, damage, error fragments or None when the bundle must load)
CASES: list[tuple[str, Callable[[Path], None], list[str] | None]] = [
    ("intact", _ok, None),
    ("missing-manifest", _delete_manifest, ["manifest.json is missing", "rebuild it with `edge build`"]),
    ("corrupt-manifest", _corrupt_manifest, ["manifest.json is not valid JSON"]),
    ("unknown-key", _unknown_key, ["invalid manifest", "artifacts[0].colour"]),
    ("future-schema", _future_schema, ["schema_version 2 is not supported"]),
    ("no-artifacts", _no_artifacts, ["lists no artifacts"]),
    ("two-hashes", _two_hashes, ["two different sha256 values"]),
    ("sha256-mismatch", _flip_a_byte, ["model.onnx: sha256", "does not match the manifest", "copy the bundle again"]),
    ("missing-model", _delete_model, ["model.onnx: listed in manifest.json but missing"]),
    ("not-a-directory", _not_a_dir, ["not a bundle directory"]),
]


@pytest.mark.parametrize(("damage", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_open_and_load(tmp_path: Path, damage: Callable[[Path], None], expected: list[str] | None) -> None:
    bundle = write_bundle(tmp_path / "b.bundle")
    damage(bundle)
    if expected is None:
        with load(bundle, facts=CPU, warmup=0) as model:
            assert model.artifact.file == "model.onnx"
        return
    with pytest.raises(BundleError) as info:
        load(bundle, facts=CPU, warmup=0)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def test_plan_bytes_are_verified_before_use(tmp_path: Path) -> None:
    art, data = plan_artifact(data=b"plan bytes v1")
    bundle_dir = write_bundle(tmp_path / "b.bundle", plans=[(art, data)])
    bundle = Bundle.open(bundle_dir)
    assert bundle.read_verified(art) == b"plan bytes v1"
    (bundle_dir / art.file).write_bytes(b"plan bytes v2")
    with pytest.raises(BundleError, match="does not match the manifest"):
        bundle.read_verified(art)
    (bundle_dir / art.file).unlink()
    with pytest.raises(BundleError, match="listed in manifest.json but missing"):
        bundle.read_verified(art)


def test_unused_damaged_plan_does_not_block_the_onnx(tmp_path: Path) -> None:
    """Only the files actually used are hashed: a corrupt plan this machine cannot run is not read."""
    art, data = plan_artifact(data=b"plan")
    bundle_dir = write_bundle(tmp_path / "b.bundle", plans=[(art, data)])
    (bundle_dir / art.file).write_bytes(b"damaged")
    with load(bundle_dir, facts=CPU, warmup=0) as model:
        assert model.backend_name == "onnxruntime-cpu"
