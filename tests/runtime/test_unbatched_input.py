"""A model whose image input has no batch axis (torchvision's detection exports take one CHW image, e.g.
``ssdlite320_mobilenet_v3_large`` exported by torch.onnx: ``images [3, 320, 320]``): ``edge build`` makes a
bundle of it, and images through it were an IndexError traceback; now one error line that says what to do,
while tensors still run through ``infer_raw``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.manifest import TensorSpec
from edge.runtime import load
from edge.spec import PostprocessSpec, PreprocessSpec
from tests.runtime.bundles import add_one_onnx, photo, photo_path, write_bundle
from tests.runtime.conftest import CPU


@pytest.fixture
def chw_bundle(tmp_path: Path) -> Path:
    shape = (3, 32, 32)
    return write_bundle(
        tmp_path / "chw.bundle",
        add_one_onnx(shape),
        preprocess=PreprocessSpec(input="x", color="rgb", scale=1 / 255),
        postprocess=PostprocessSpec(task="raw"),
        inputs=[TensorSpec("x", "float32", shape)],
        outputs=[TensorSpec("y", "float32", shape)],
        name="chw",
    )


def test_predict_on_an_unbatched_input_is_one_config_error(chw_bundle: Path) -> None:
    with load(chw_bundle, facts=CPU, warmup=0) as model:
        with pytest.raises(ConfigError, match=r"input 'x' has shape \[3, 32, 32\]; images need a 4-D input"):
            model.predict(photo("astronaut"))
        x = np.zeros((3, 32, 32), np.float32)
        assert np.array_equal(model.infer_raw({"x": x})["y"], x + 1)  # y = x + 1, by the graph's definition


def test_edge_infer_on_an_unbatched_input_is_one_error_line(chw_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "infer", str(chw_bundle), str(photo_path("astronaut")), "--save", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "4-D input with a batch axis" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_an_unbatched_image_input_takes_batches_of_one(chw_bundle: Path) -> None:
    """[3, 32, 32]: the first axis is the channels, not a batch, so bench/predict_batch split by 1, not 3."""
    with load(chw_bundle, facts=CPU, warmup=0) as model:
        assert model.max_batch == 1
