"""A bundle directory on disk: its validated manifest and checksum-verified files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import BundleError
from edge.manifest import Artifact, Manifest, read_manifest, verify_file


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Bundle:
        """Read and validate ``PATH/manifest.json``; files are checked when used (:meth:`verified`)."""
        bundle = Path(path)
        manifest = read_manifest(bundle)
        if not manifest.inputs or not manifest.outputs:
            raise BundleError(
                f"{bundle / 'manifest.json'}: lists no inputs or outputs; rebuild the bundle with `edge build`"
            )
        if not manifest.artifacts:
            raise BundleError(f"{bundle / 'manifest.json'}: lists no artifacts; rebuild the bundle with `edge build`")
        for a in manifest.artifacts:
            listed = manifest.files.get(a.file)
            if isinstance(listed, dict) and listed.get("sha256") not in (None, a.sha256):
                raise BundleError(
                    f"{bundle / 'manifest.json'}: artifact {a.file} has two different sha256 values (artifacts and "
                    "files); the manifest was edited by hand, rebuild the bundle with `edge build`"
                )
        return cls(bundle, manifest)

    @property
    def name(self) -> str:
        return self.manifest.name

    def verified(self, artifact: Artifact) -> Path:
        """The artifact's path after checking its sha256 against the manifest (refuses a mismatch)."""
        return verify_file(self.path, artifact.file, artifact.sha256)

    def read_verified(self, artifact: Artifact) -> bytes:
        """The artifact's bytes, checked against the manifest's sha256 on exactly the bytes returned."""
        import hashlib

        path = self.path / artifact.file
        if not path.is_file():
            return self.verified(artifact).read_bytes()  # raises the standard "missing" error
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != artifact.sha256:
            raise BundleError(
                f"{path}: sha256 {actual[:12]}... does not match the manifest's {artifact.sha256[:12]}...; "
                "the file is corrupt or was replaced: copy the bundle again or rebuild it"
            )
        return data
