"""The bundle argument given a file that is not a bundle (a photo first: `edge infer photo.jpg photo.jpg`) was
answered with "make one with `edge build MODEL.onnx -o photo.jpg`"; now it says what the argument must be."""

from __future__ import annotations

import pytest

from edge.cli import main
from tests.runtime.bundles import photo_path


def test_a_photo_given_as_the_bundle_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    image = str(photo_path("astronaut"))
    assert main(["infer", image, image]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {image}: a file, not a bundle directory (a bundle is the folder `edge build MODEL.onnx -o "
        "NAME.bundle` writes; commands take it first: `edge infer NAME.bundle IMAGE...`)"
    ]
