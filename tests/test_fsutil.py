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
