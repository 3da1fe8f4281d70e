"""Fixtures for runtime tests: a RetinaFace bundle from `edge build` and the facts of a CPU-only machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.runtime import Facts, load
from edge.runtime.model import Model
from tests.runtime.bundles import build_retinaface

CPU = Facts(target="cpu", cuda=False, cuda_reason="no NVIDIA GPU detected")


@pytest.fixture(scope="session")
def face_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RetinaFace built by the product's builder (``edge build``), ONNX only (a CPU target)."""
    return build_retinaface(tmp_path_factory.mktemp("bundles") / "retinaface.bundle")


@pytest.fixture(scope="session")
def face_model(face_bundle: Path) -> Iterator[Model]:
    model = load(face_bundle, facts=CPU, warmup=1)
    yield model
    model.close()
