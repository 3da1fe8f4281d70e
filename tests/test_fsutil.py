"""edge.fsutil.atomic_write: the target is either the old file or the complete new one, never a torso."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge.fsutil import atomic_write


def test_writes_bytes_and_text_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "cache.bin"
    assert atomic_write(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_write(target, "héllo", mode=0o600)
    assert target.read_text(encoding="utf-8") == "héllo"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["cache.bin"]


class Exploding:
    """A buffer whose bytes cannot be taken: the write fails half-way, as a full disk would."""

    def __buffer__(self, flags: int) -> memoryview:
        raise OSError(28, "No space left on device")


def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises((OSError, TypeError)):
        atomic_write(target, Exploding())  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_interrupt_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.plan", b"data")
    assert list(tmp_path.iterdir()) == []


def test_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path: Path) -> None:
    """Like open(path, "w"): a new file is 0666 minus the umask (mkstemp alone gives 0600), an existing
    file keeps its mode. Checked in a child process so the umask change cannot affect other tests' threads."""
    import subprocess
    import sys

    script = (
        "import os, stat, sys; from pathlib import Path; from edge.fsutil import atomic_write, current_umask\n"
        "os.umask(int(sys.argv[2], 8)); d = Path(sys.argv[1])\n"
        "assert current_umask() == int(sys.argv[2], 8)\n"
        "atomic_write(d / 'new.jpg', b'x'); (d / 'old.jpg').write_bytes(b'o'); os.chmod(d / 'old.jpg', 0o640)\n"
        "atomic_write(d / 'old.jpg', b'y')\n"
        "print(oct(stat.S_IMODE((d / 'new.jpg').stat().st_mode)), oct(stat.S_IMODE((d / 'old.jpg').stat().st_mode)))"
    )
    for umask, want in (("022", "0o644 0o640"), ("077", "0o600 0o640"), ("002", "0o664 0o640")):
        folder = tmp_path / umask
        folder.mkdir()
        out = subprocess.run(
            [sys.executable, "-c", script, str(folder), umask], capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == want.split(), out.stderr
