"""Progress lines while a pipeline runs: at most one per interval, with the frame count (of a total)."""

from __future__ import annotations

from typing import Any

import pytest

from edge.observer import PipelineStats
from edge.pipeline import Pipeline
from edge.pipeline.progress import Progress
from edge.sources import open_source


def _stats(frames: int, reconnects: int = 0) -> PipelineStats:
    return PipelineStats(frames=frames, fps=12.5, dropped=1, reconnects=reconnects, source_state={}, stage_ms={})


class Clock:
    """Time set by the test (the interval logic, not the pipeline, is under test here)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("total", "reconnects", "line"),
    [
        (90, 0, "3/90 frames  12.5 fps  dropped 1"),
        (None, 0, "3 frames  12.5 fps  dropped 1"),
        (None, 2, "3 frames  12.5 fps  dropped 1  reconnects 2"),
    ],
)
def test_line(total: int | None, reconnects: int, line: str) -> None:
    assert Progress.line(_stats(3, reconnects), total) == line


def test_at_most_one_line_per_interval() -> None:
    clock, lines = Clock(), []
    progress = Progress(lines.append, every=2.0, total=10, clock=clock)
    frame: Any = None
    progress.on_start(_stats(0), control=None)  # type: ignore[arg-type]
    for i, t in enumerate((0.5, 1.9, 2.0, 2.1, 3.9, 4.1, 9.0), start=1):
        clock.now = 100.0 + t
        progress.on_frame(frame, _stats(i))
    assert lines == ["3/10 frames  12.5 fps  dropped 1", "6/10 frames  12.5 fps  dropped 1",
                     "7/10 frames  12.5 fps  dropped 1"]  # fmt: skip


def test_in_a_real_pipeline_every_frame_is_counted(model: Any) -> None:
    lines: list[str] = []
    progress = Progress(lines.append, every=0.0, total=5)  # every=0: a line per frame
    stats = Pipeline(model, [open_source("test://?width=96&height=64&frames=5")], [], observers=[progress]).run()
    assert stats.frames == 5
    assert [line.split()[0] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
