"""The threaded pipeline: capture -> prepare -> infer -> finish -> sinks, each on its own thread.

Stages talk through small bounded queues (:mod:`edge.pipeline.channel`), so memory stays flat whatever
the slowest stage is; the only place frames are dropped is a live source's one-slot mailbox.
Throughput approaches the slowest stage rather than the sum. Stopping (``stop()``, SIGINT, SIGTERM,
``max_frames``, ``duration``) stops taking new frames and drains the ones in flight: every frame that
entered the pipeline is written to every sink. An exception in any stage stops the pipeline and is
raised in the thread that called :meth:`Pipeline.run`, with the stage named.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EdgeError, EngineError
from edge.observer import FrameResult, PipelineObserver, PipelineStats
from edge.pipeline.channel import END, Channel, StageFailed
from edge.pipeline.signals import on_stop_signals
from edge.pipeline.stages import ModelStages, PipelineModel
from edge.pipeline.stats import StageTimes
from edge.preprocess import Meta
from edge.sinks.base import Sink
from edge.sources.base import Frame, Source

if TYPE_CHECKING:
    from edge.events.stage import EventStage

log = logging.getLogger("edge.pipeline")


class PipelineError(EdgeError):
    """A stage failed with an error that is not one of the kit's own (a bug, or a library's error)."""


@dataclass
class PipelineOptions:
    fps_cap: float | None = None  # at most this many frames per second enter the pipeline
    stride: int = 1  # take every Nth frame of each source
    max_frames: int | None = None  # stop after this many frames (all sources together)
    duration: float | None = None  # stop after this many seconds
    batch: int | None = None  # largest inference batch (default: the model's, up to the number of sources)
    queue_size: int = 2  # frames waiting between two stages
    handle_signals: bool = True  # SIGINT/SIGTERM drain and stop (when run from the main thread)


@dataclass
class _Item:
    frame: Frame
    tensor: np.ndarray | None
    meta: Meta | None
    timings: dict[str, float]


class Pipeline:
    """Runs ``sources`` through ``model`` into ``sinks``; implements :class:`edge.observer.PipelineControl`."""

    def __init__(
        self,
        model: PipelineModel,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        options: PipelineOptions | None = None,
        observers: Sequence[PipelineObserver] = (),
        events: EventStage | None = None,
    ) -> None:
        if not sources:
            raise EdgeError("pipeline: give at least one source")
        self.model = model
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.options = options or PipelineOptions()
        self.observers = list(observers)
        self.events = events  # tracking and analytics, in frame order after decoding (the "track" stage)
        batch = self.options.batch or len(self.sources)
        self.stages = ModelStages(model, batch)
        self.times = StageTimes()
        self._fps_cap = self.options.fps_cap
        # Prepared frames wait for the backend: one batch ahead keeps it busy; more would only add latency
        # (live frames should wait in the source's mailbox, where a newer frame replaces them).
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._q_infer = self._channel(self.stages.max_batch * max(1, self.options.queue_size - 1))
        self._q_finish = self._channel(2)
        self._q_sink = self._channel(max(self.options.queue_size, self.stages.max_batch))
        self._frames_ready = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started: float | None = None
        self.stop_reason = ""
        self.dispatched = 0
        self.skipped = 0
        self.batches = 0
        self._obs_stats: PipelineStats | None = None
        self._obs_stats_time = 0.0

    # ---- PipelineControl -------------------------------------------------------------------------
    def set_fps_cap(self, fps: float | None) -> None:
        """Cap the processed frame rate; ``None`` restores the configured cap."""
        self._fps_cap = self.options.fps_cap if fps is None else (fps if fps > 0 else None)
        self.event("fps_cap", f"fps cap set to {self._fps_cap or 'none'}", {"fps_cap": self._fps_cap})

    def stats(self) -> PipelineStats:
        extra: dict[str, Any] = {
            "skipped": self.skipped,
            "in_flight": self.dispatched - self.times.frames,
            "batches": self.batches,
            "mode": self.stages.mode,
            "fps_cap": self._fps_cap,
            "captured": sum(s.captured for s in self.sources),
        }
        extra.update(self.times.latency_percentiles())
        if self.events is not None:
            extra["events"] = self.events.status()
        return PipelineStats(
            frames=self.times.frames,
            fps=round(self.times.fps(None), 2),
            dropped=sum(s.dropped for s in self.sources),
            reconnects=sum(s.reconnects for s in self.sources),
            source_state={s.uri: s.state for s in self.sources},
            stage_ms=self.times.means(),
            extra=extra,
        )

    def _stats_for_observers(self) -> PipelineStats:
        """stats(), recomputed at most every 0.25 s (observers see it on every frame)."""
        now = time.monotonic()
        if self._obs_stats is None or now - self._obs_stats_time > 0.25:
            self._obs_stats, self._obs_stats_time = self.stats(), now
        else:
            self._obs_stats.frames = self.times.frames
        return self._obs_stats

    # ---- events ----------------------------------------------------------------------------------
    def event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        level = logging.WARNING if kind in ("disconnect", "reconnect", "argus") else logging.INFO
        log.log(level, "%s: %s", kind, message)
        for obs in self.observers:
            try:
                obs.on_event(kind, message, data)
            except Exception as exc:
                self._fail(f"observer {type(obs).__name__}", exc)

    def stop(self, reason: str = "stop requested") -> None:
        """Stop taking frames; frames in flight are still processed and written."""
        if not self._stopping.is_set():
            self.stop_reason = reason
            in_flight = self.dispatched - self.times.frames
            self._stopping.set()
            self._frames_ready.set()
            # Observers (and the log) learn that draining starts now: sd_notify sends STOPPING=1 here.
            msg = f"{reason}: draining {in_flight} frame(s) in flight"
            self.event("stopping", msg, {"reason": reason, "in_flight": in_flight})

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = (stage, exc)
        self._abort.set()
        self._stopping.set()
        self._frames_ready.set()

    # ---- running ---------------------------------------------------------------------------------
    def run(self) -> PipelineStats:
        """Run until the sources end, ``max_frames``/``duration``, ``stop()`` or a signal; the final stats."""
        restore = (
            on_stop_signals(self.stop, self._abort.set)
            if self.options.handle_signals and threading.current_thread() is threading.main_thread()
            else (lambda: None)
        )
        opened: list[Sink] = []
        started: list[Source] = []
        try:
            for src in self.sources:  # sources first: a camera that cannot open leaves no empty outputs
                src.start(self.event, self._frames_ready.set)
                started.append(src)
            for sink in self.sinks:
                sink.open()
                opened.append(sink)
            log.info(
                "pipeline: %d source(s) -> %d sink(s), model %s", len(self.sources), len(self.sinks), self.stages.mode
            )
            for obs in self.observers:
                obs.on_start(self.stats(), self)
            self._started = time.monotonic()
            for name, target in (
                ("prepare", self._prepare_loop),
                ("infer", self._infer_loop),
                ("finish", self._finish_loop),
                ("sink", self._sink_loop),
            ):
                t = threading.Thread(target=self._guard, args=(name, target), name=f"pipeline-{name}", daemon=True)
                t.start()
                self._threads.append(t)
            self._wait()
        finally:
            self._stopping.set()
            for src in started:
                src.stop()
            if self._error is not None:
                self._abort.set()
            for t in self._threads:
                t.join(timeout=10)
            final = self.stats()
            for obs in self.observers:
                try:
                    obs.on_stop(final)
                except Exception:
                    log.warning("observer %s failed on stop", type(obs).__name__, exc_info=True)
            for sink in opened:
                try:
                    sink.close()
                except Exception as exc:  # keep closing the others
                    self._fail(f"sink {sink.uri}", exc)
            restore()
        self._raise_error()
        return final

    def _wait(self) -> None:
        duration = self.options.duration
        sink_thread = self._threads[-1]
        while sink_thread.is_alive():
            sink_thread.join(timeout=0.1)
            if duration is not None and self._started is not None and time.monotonic() - self._started >= duration:
                self.stop(f"duration {duration:g} s reached")

    def _raise_error(self) -> None:
        if self._error is None:
            return
        stage, exc = self._error
        if isinstance(exc, EdgeError):
            try:
                err: EdgeError = type(exc)(f"{stage} stage: {exc}")
            except TypeError:  # pragma: no cover - every EdgeError takes one message
                err = PipelineError(f"{stage} stage: {exc}")
            raise err from exc
        log.debug("%s stage failed", stage, exc_info=exc)
        raise PipelineError(f"{stage} stage failed: {type(exc).__name__}: {exc}") from exc

    def _guard(self, stage: str, target: Any) -> None:
        try:
            target()
        except StageFailed:
            pass
        except BaseException as exc:
            self._fail(stage, exc)

    def _channel(self, maxsize: int) -> Channel:
        return Channel(maxsize, self._abort, self._stopping)

    # ---- stages ----------------------------------------------------------------------------------
    def _next_frame(self, counters: list[int], turn: int) -> tuple[Frame | None, int]:
        """The next frame from the sources (round robin), waiting for one; None when all are done."""
        n = len(self.sources)
        while not self._stopping.is_set():
            self._frames_ready.clear()
            for k in range(n):
                i = (turn + k) % n
                src = self.sources[i]
                if src.error is not None:
                    self._fail(f"capture {src.uri}", src.error)
                    raise StageFailed
                frame = src.get()
                if frame is None:
                    continue
                counters[i] += 1
                if (counters[i] - 1) % self.options.stride:
                    self.skipped += 1
                    return None, -2  # skipped: come back at once
                return frame, (i + 1) % n
            if all(s.done for s in self.sources):
                return None, -1
            self._frames_ready.wait(0.1)
        return None, -1

    def _prepare_loop(self) -> None:
        counters = [0] * len(self.sources)
        turn = 0
        next_time = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self.options.max_frames is not None and self.dispatched >= self.options.max_frames:
                    self.stop(f"{self.options.max_frames} frames processed")
                    break
                cap = self._fps_cap
                if cap:  # wait for the next slot, then take the newest frame
                    delay = next_time - time.monotonic()
                    if delay > 0 and self._stopping.wait(delay):
                        break
                if not self._q_infer.wait_for_room():
                    break
                frame, nxt = self._next_frame(counters, turn)
                if frame is None:
                    if nxt == -1:
                        if not self._stopping.is_set():
                            self.stop("end of stream")
                        break
                    continue
                turn = nxt
                if cap:
                    next_time = max(next_time, time.monotonic() - 0.5 / cap) + 1.0 / cap
                t0 = time.perf_counter()
                tensor, meta = self.stages.prepare(frame.image)
                ms = (time.perf_counter() - t0) * 1000.0
                if self.stages.split:
                    self.times.add("preprocess", ms)
                self.dispatched += 1
                self._q_infer.put(_Item(frame, tensor, meta, {"preprocess": round(ms, 3)} if self.stages.split else {}))
        finally:
            if not self._abort.is_set():
                self._q_infer.put(END)

    def _infer_loop(self) -> None:
        done = False
        while not done:
            item = self._q_infer.get()
            if item is END:
                break
            items = [item]
            while len(items) < self.stages.max_batch:
                try:
                    more = self._q_infer.get_nowait()
                except queue.Empty:
                    break
                if more is END:
                    done = True
                    break
                if self.stages.split and more.tensor is not None and more.tensor.shape != items[0].tensor.shape:
                    self._run_batch(items)  # a different input size starts a new batch
                    items = []
                items.append(more)
            if items:
                self._run_batch(items)
        self._q_finish.put(END)

    def _run_batch(self, items: list[_Item]) -> None:
        t0 = time.perf_counter()
        outputs, timings = self.stages.infer(
            [i.tensor for i in items if i.tensor is not None], [i.frame.image for i in items]
        )
        ms = (time.perf_counter() - t0) * 1000.0
        self.batches += 1
        if self.stages.split:
            timings = {"infer": ms}
        for stage, value in timings.items():
            self.times.add(stage, value)
        for i in items:
            i.timings.update({k: round(v, 3) for k, v in timings.items()})
        self._q_finish.put((items, outputs))

    def _finish_loop(self) -> None:
        while True:
            got = self._q_finish.get()
            if got is END:
                break
            items, outputs = got
            t0 = time.perf_counter()
            results = self.stages.finish(outputs, [i.meta for i in items])
            if len(results) != len(items):
                raise EngineError(f"the model returned {len(results)} results for a batch of {len(items)} frames")
            ms = (time.perf_counter() - t0) * 1000.0
            if self.stages.split:
                self.times.add("postprocess", ms / len(items), len(items))
            now = time.time()
            for item, result in zip(items, results):
                if self.stages.split:
                    item.timings["postprocess"] = round(ms / len(items), 3)
                f = item.frame
                events, view = None, None
                if self.events is not None:
                    t1 = time.perf_counter()
                    result, events = self.events.process(f.source, result, f.capture_time)
                    view = self.events.view()
                    track_ms = (time.perf_counter() - t1) * 1000.0
                    self.times.add("track", track_ms)
                    item.timings["track"] = round(track_ms, 3)
                fr = FrameResult(f.frame_id, f.source, f.capture_time, now, result, f.image, item.timings, events, view)
                self._q_sink.put(fr)
        self._q_sink.put(END)

    def _sink_loop(self) -> None:
        while True:
            fr = self._q_sink.get()
            if fr is END:
                break
            t0 = time.perf_counter()
            for sink in self.sinks:
                try:
                    sink.write(fr)
                except Exception as exc:
                    self._fail(f"sink {sink.uri}", exc)
                    raise StageFailed from exc
            ms = (time.perf_counter() - t0) * 1000.0
            fr.timings_ms["sink"] = round(ms, 3)
            self.times.add("sink", ms)
            self.times.frame_done((fr.result_time - fr.capture_time) * 1000.0)
            if self.observers:
                stats = self._stats_for_observers()
                for obs in self.observers:
                    try:
                        obs.on_frame(fr, stats)
                    except Exception as exc:
                        self._fail(f"observer {type(obs).__name__}", exc)
                        raise StageFailed from exc
