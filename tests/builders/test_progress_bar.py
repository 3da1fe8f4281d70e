"""builders.progress_bar: the bar on a terminal, periodic lines in logs, the closing line."""

from __future__ import annotations

import io
import threading

import pytest

from builders.progress_bar import ProgressBar, format_elapsed


class FakeClock:
    """A clock the test moves by hand, so periodic output is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (7.9, "0:07"), (754, "12:34"), (3723, "1:02:03")])
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_log_mode_prints_start_phases_heartbeat_and_done() -> None:
    out, clock = io.StringIO(), FakeClock()
    with ProgressBar(4, "calibrate", stream=out, tty=False, interval=5.0, clock=clock) as bar:
        bar.advance()  # within the interval: no line
        clock.now += 6
        bar.advance()  # interval passed: a heartbeat line
        bar.set_phase("collecting ranges")  # a phase change always prints
        bar.set_phase("collecting ranges")  # the same phase again does not
        clock.now += 1
        bar.advance(2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "calibrate: started (4 steps)"
    assert lines[1].startswith("calibrate  [############............]  2/4  0:06")
    assert lines[2].endswith("0:06  collecting ranges")
    assert lines[3] == "calibrate: done in 0:07 (4/4)"
    assert len(lines) == 4
    assert "\r" not in out.getvalue()


def test_tty_mode_redraws_in_place_and_ends_with_newline() -> None:
    out, clock = io.StringIO(), FakeClock()
    with ProgressBar(2, "build rtx-ada", stream=out, tty=True, clock=clock) as bar:
        bar.set_phase("Building engine")
        clock.now += 1
        bar.advance()
        clock.now += 1
        bar.advance()
    text = out.getvalue()
    assert text.startswith("\rbuild rtx-ada")
    assert "\rbuild rtx-ada  [########################]  2/2  0:02  Building engine" in text
    assert text.endswith("build rtx-ada: done in 0:02 (2/2)\n")
    assert text.count("\n") == 2  # the bar's own line, then the closing line


@pytest.mark.parametrize(("error", "outcome"), [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_closing_line_names_failure_and_interrupt(error: BaseException, outcome: str) -> None:
    out = io.StringIO()
    with pytest.raises(type(error)), ProgressBar(None, "build", stream=out, tty=False, clock=FakeClock()) as bar:
        bar.advance(3)
        raise error
    assert out.getvalue().splitlines()[-1] == f"build: {outcome} in 0:00 (3)"


def test_unknown_total_shows_a_count_and_set_total_turns_it_into_a_bar() -> None:
    bar = ProgressBar(None, "engine", stream=io.StringIO(), tty=False, clock=FakeClock())
    bar.advance(5)
    assert bar.render() == "engine  5  0:00"
    bar.set_total(10, done=2)
    assert bar.render().startswith("engine  [####....................]  2/10")


class _LineEvent(io.StringIO):
    """A stream that signals when a given number of lines has been written."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.wanted = lines
        self.reached = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.getvalue().count("\n") >= self.wanted:
            self.reached.set()
        return n


def test_heartbeat_thread_prints_while_nothing_advances() -> None:
    # A long blocking step (an engine build phase) must not leave a CI log silent: the heartbeat thread
    # prints on its own. Real clock, tiny interval; the event (not a sleep) tells us the lines came.
    out = _LineEvent(lines=3)
    with ProgressBar(None, "build", stream=out, tty=False, interval=0.01):
        assert out.reached.wait(timeout=10), out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "build: started"
    assert lines[1].startswith("build  0:00")
    assert lines[-1].startswith("build: done in")
