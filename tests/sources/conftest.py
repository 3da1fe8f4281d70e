from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.media import write_video


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """25 frames of 160x120, frame i a flat grey of level 10 + 8 * i."""
    return write_video(tmp_path / "clip.avi", 25)
