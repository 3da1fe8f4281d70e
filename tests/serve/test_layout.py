"""What `edge serve PATH` makes of the paths a new user gives: the repository, one model's folder of it, one
version folder, a bundle, an ONNX file. A model folder used to be served as a model named after its version
("serving 2/1", its config.yaml ignored), and an .onnx file was "no such directory"."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.serve.repository import OnDisk, scan
from tests.runtime.bundles import write_bundle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/yolo/{1,2}`` with ``models/yolo/config.yaml``, and ``models/face/1``."""
    root = tmp_path_factory.mktemp("layout") / "models"
    bundle = write_bundle(root.parent / "face.bundle")
    for rel in ("yolo/1", "yolo/2", "face/1"):
        shutil.copytree(bundle, root / rel)
    (root / "yolo" / "config.yaml").write_text("max_batch: 2\n")
    return root


def served(found: dict[str, OnDisk | str]) -> dict[str, tuple[str, str, str | None]]:
    out = {}
    for name, entry in found.items():
        assert isinstance(entry, OnDisk), entry
        out[name] = (entry.version, entry.path.name, entry.config_path.name if entry.config_path else None)
    return out


def test_the_repository_serves_every_model_at_its_newest_version(repo: Path) -> None:
    assert served(scan(repo)) == {"face": ("1", "1", "config.yaml"), "yolo": ("2", "2", "config.yaml")}


def test_one_model_folder_is_that_model_with_its_config(repo: Path) -> None:
    found = scan(repo / "yolo")
    assert served(found) == {"yolo": ("2", "2", "config.yaml")}
    entry = found["yolo"]
    assert isinstance(entry, OnDisk) and entry.config_path == repo / "yolo" / "config.yaml"


def test_a_version_folder_is_its_model_at_that_version(repo: Path) -> None:
    found = scan(repo / "yolo" / "1")
    assert served(found) == {"yolo": ("1", "1", "config.yaml")}


def test_a_bundle_is_named_after_its_folder(repo: Path) -> None:
    assert served(scan(repo.parent / "face.bundle")) == {"face": ("1", "face.bundle", None)}


def test_an_onnx_file_is_answered_with_the_build_command(tmp_path: Path) -> None:
    onnx = tmp_path / "yolo.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(ConfigError, match=r"an ONNX model, not a bundle; build one first: `edge build .*yolo.onnx -o"):
        scan(onnx)
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "serve", str(onnx), "--no-auth", "--http", "127.0.0.1:0", "--grpc", "off"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "an ONNX model, not a bundle" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
