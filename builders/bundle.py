"""Writing a bundle directory atomically: everything goes into a temp dir beside the output, renamed at the end.

    check_output(out, force)                   # early: refuse an existing output before any work
    with BundleWriter(out, force=force) as bundle:
        onnx.save(model, bundle.path("model.onnx"))
        ...
        bundle.commit(manifest)                # fills manifest.files, writes manifest.json, renames

A build that fails or is interrupted (Ctrl-C included) removes its temp dir and leaves the output path
as it was: absent, or the previous bundle when ``force`` replaces one (the old bundle is only moved
aside and deleted once the new one is in place). A process killed outright (SIGKILL, power loss) can
leave a ``.NAME.tmp-*`` folder beside the output, never a half-written bundle at the output path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from edge.errors import BuildError
from edge.manifest import MANIFEST, Artifact, Manifest, sha256_file

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.txt"


def plan_file_name(targets: tuple[str, ...] | list[str]) -> str:
    """``engine-rtx-ada.plan``; a plan covering several targets joins their ids: ``engine-rtx-ampere+rtx-ada.plan``."""
    return "engine-" + "+".join(targets) + ".plan"


def _is_bundle_like(path: Path) -> bool:
    """A directory that is a bundle (has a manifest) or is empty: safe to replace with ``force``."""
    return path.is_dir() and not path.is_symlink() and ((path / MANIFEST).is_file() or not any(path.iterdir()))


def check_output(out: Path, force: bool) -> None:
    """Refuse an output that exists (without ``force``) or that ``force`` must not delete (not a bundle)."""
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise BuildError(f"{out}: already exists; pass --force to replace it, or choose another -o path")
    if not _is_bundle_like(out):
        raise BuildError(
            f"{out}: exists and is not a bundle (no {MANIFEST}); --force only replaces bundles: "
            "remove it yourself or choose another -o path"
        )


class BundleWriter:
    """A bundle being written in a temp dir beside ``out``; :meth:`commit` puts it in place."""

    def __init__(self, out: str | os.PathLike[str], *, force: bool = False) -> None:
        self.out = Path(out)
        self.force = force
        self.dir: Path | None = None
        self.committed = False
        self._hashes: dict[str, tuple[int, int, str]] = {}  # name -> (size, mtime_ns, sha256)

    def __enter__(self) -> BundleWriter:
        check_output(self.out, self.force)
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=parent))
        except OSError as exc:
            # mkdir says "File exists" when a folder on the way is a file: name that file instead
            blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
            reason = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror
            raise BuildError(f"{self.out}: cannot create the bundle there ({reason}); choose another -o path") from None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.dir is not None and not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write the bundle file ``name`` (inside the temp dir)."""
        if self.dir is None:
            raise RuntimeError("BundleWriter used outside its with-block")
        if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST):
            raise BuildError(f"{name!r} is not a valid bundle file name")
        return self.dir / name

    def hash_file(self, name: str) -> tuple[str, int]:
        """sha256 and size of a written file (hashed once, unless the file changed since)."""
        st = self.path(name).stat()
        cached = self._hashes.get(name)
        if cached is None or cached[:2] != (st.st_size, st.st_mtime_ns):
            cached = (st.st_size, st.st_mtime_ns, sha256_file(self.path(name)))
            self._hashes[name] = cached
        return cached[2], cached[0]

    def artifact(self, name: str, **fields: object) -> Artifact:
        """An :class:`Artifact` for a written file, with its sha256 and size."""
        sha256, size = self.hash_file(name)
        return Artifact(file=name, sha256=sha256, size=size, **fields)  # type: ignore[arg-type]

    def commit(self, manifest: Manifest) -> Path:
        """Record every file's sha256 and size in ``manifest.files``, write ``manifest.json``, move into place."""
        if self.dir is None:
            raise RuntimeError("BundleWriter.commit() outside its with-block")
        manifest.files = {
            p.name: dict(zip(("sha256", "size"), self.hash_file(p.name)))
            for p in sorted(self.dir.iterdir())
            if p.is_file() and p.name != MANIFEST
        }
        manifest.write(self.dir)
        # mkdtemp/mkstemp make things private; a bundle is meant to be copied and served
        os.chmod(self.dir, 0o755)
        for p in self.dir.iterdir():
            os.chmod(p, 0o644)
        old: Path | None = None
        if self.out.exists() or self.out.is_symlink():
            check_output(self.out, self.force)
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "bundle")
        try:
            os.replace(self.dir, self.out)
        except OSError as exc:
            if old is not None:
                os.replace(old / "bundle", self.out)
                shutil.rmtree(old, ignore_errors=True)
            raise BuildError(f"{self.out}: cannot move the finished bundle into place ({exc.strerror})") from None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out
