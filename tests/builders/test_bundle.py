"""builders.bundle: atomic bundle writing, --force semantics, file hashes in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.bundle import BundleWriter, check_output, plan_file_name
from edge.errors import BuildError
from edge.manifest import Manifest, TensorSpec, read_manifest, sha256_file, verify_file
from edge.spec import PostprocessSpec, PreprocessSpec


def manifest() -> Manifest:
    return Manifest(
        name="m",
        source="m.onnx",
        source_sha256="0" * 64,
        precision="fp32",
        inputs=[TensorSpec("x", "float32", (1, 3, 8, 8))],
        outputs=[TensorSpec("y", "float32", (1, 10))],
        preprocess=PreprocessSpec(input="x"),
        postprocess=PostprocessSpec(),
        artifacts=[],
    )


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_commit_writes_files_hashes_and_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "m.bundle"
    with BundleWriter(out) as bundle:
        bundle.path("model.onnx").write_bytes(b"onnx bytes")
        bundle.path("labels.txt").write_text("a\nb\n")
        m = manifest()
        m.artifacts.append(bundle.artifact("model.onnx", backend="onnxruntime", precision="fp32", targets=("any",)))
        assert not out.exists()  # nothing at the output until commit
        assert bundle.commit(m) == out
    assert leftovers(tmp_path) == ["m.bundle"]
    assert leftovers(out) == ["labels.txt", "manifest.json", "model.onnx"]
    read = read_manifest(out)
    assert read.files == {
        "labels.txt": {"sha256": sha256_file(out / "labels.txt"), "size": 4},
        "model.onnx": {"sha256": sha256_file(out / "model.onnx"), "size": 10},
    }
    art = read.artifacts[0]
    assert (art.file, art.size) == ("model.onnx", 10)
    verify_file(out, art.file, art.sha256)
    assert out.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o644}


@pytest.mark.parametrize("error", [RuntimeError("stage failed"), BuildError("bad model"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_build_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    out = tmp_path / "m.bundle"
    with pytest.raises(type(error)), BundleWriter(out) as bundle:
        bundle.path("model.onnx").write_bytes(b"half")
        raise error
    assert leftovers(tmp_path) == []


def test_existing_output_needs_force_and_force_replaces_only_at_commit(tmp_path: Path) -> None:
    out = tmp_path / "m.bundle"
    with BundleWriter(out) as bundle:
        bundle.path("model.onnx").write_bytes(b"v1")
        bundle.commit(manifest())
    with pytest.raises(BuildError, match=r"m\.bundle: already exists; pass --force to replace it"), BundleWriter(out):
        pass
    # --force, but the build fails: the old bundle is untouched
    with pytest.raises(RuntimeError), BundleWriter(out, force=True) as bundle:
        bundle.path("model.onnx").write_bytes(b"v2")
        raise RuntimeError("calibration failed")
    assert (out / "model.onnx").read_bytes() == b"v1"
    with BundleWriter(out, force=True) as bundle:
        bundle.path("model.onnx").write_bytes(b"v2")
        bundle.commit(manifest())
    assert (out / "model.onnx").read_bytes() == b"v2"
    assert json.loads((out / "manifest.json").read_text())["files"]["model.onnx"]["size"] == 2
    assert leftovers(tmp_path) == ["m.bundle"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("x"), "exists and is not a bundle"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), "exists and is not a bundle"),
    ],
)
def test_force_never_deletes_something_that_is_not_a_bundle(tmp_path: Path, make: object, message: str) -> None:
    out = tmp_path / "precious"
    make(out)  # type: ignore[operator]
    with pytest.raises(BuildError, match=message):
        check_output(out, force=True)
    check_output(tmp_path / "absent", force=False)


def test_an_empty_directory_may_be_replaced_with_force(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    with BundleWriter(out, force=True) as bundle:
        bundle.commit(manifest())
    assert leftovers(out) == ["manifest.json"]


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "manifest.json"])
def test_bad_file_names_are_refused(tmp_path: Path, name: str) -> None:
    with BundleWriter(tmp_path / "b") as bundle, pytest.raises(BuildError, match="not a valid bundle file name"):
        bundle.path(name)


@pytest.mark.parametrize(
    ("targets", "name"),
    [(("rtx-ada",), "engine-rtx-ada.plan"), (("rtx-ampere", "rtx-ada"), "engine-rtx-ampere+rtx-ada.plan")],
)
def test_plan_file_names(targets: tuple[str, ...], name: str) -> None:
    assert plan_file_name(targets) == name


def test_output_in_a_missing_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "m.bundle"
    with BundleWriter(out) as bundle:
        bundle.commit(manifest())
    assert (out / "manifest.json").is_file()


def test_output_below_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "m.bundle"
    with pytest.raises(BuildError) as info:
        BundleWriter(out).__enter__()
    assert (
        str(info.value)
        == f"{out}: cannot create the bundle there ({tmp_path / 'afile'} is a file, not a folder); choose another -o path"
    )
    assert leftovers(tmp_path) == ["afile"]


@pytest.mark.parametrize("replaced", [True, False], ids=["replacing-a-bundle", "new-output"])
def test_a_failed_commit_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replaced: bool) -> None:
    """The rename that moves the finished bundle into place fails (the double below stands in for the
    filesystem refusing a rename, e.g. EXDEV across mounts, EIO, or a folder another process created at
    -o meanwhile): the previous bundle is back, byte for byte, and nothing else is left beside it. What it
    does not model: a crash between the two renames (the previous bundle then waits in ``.m.bundle.old-*``)."""
    import errno
    import os

    out = tmp_path / "m.bundle"
    if replaced:
        with BundleWriter(out) as bundle:
            bundle.path("model.onnx").write_bytes(b"v1")
            bundle.commit(manifest())
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = os.replace

    def refuse_the_new_bundle(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name.startswith(".m.bundle.tmp-"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_replace(src, dst)

    monkeypatch.setattr("builders.bundle.os.replace", refuse_the_new_bundle)
    with pytest.raises(BuildError) as caught, BundleWriter(out, force=True) as bundle:
        bundle.path("model.onnx").write_bytes(b"v2")
        bundle.commit(manifest())
    assert str(caught.value) == f"{out}: cannot move the finished bundle into place (Invalid cross-device link)"
    if replaced:
        assert leftovers(tmp_path) == ["m.bundle"]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert read_manifest(out).files["model.onnx"]["size"] == 2
    else:
        assert leftovers(tmp_path) == []
