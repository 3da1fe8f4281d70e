"""The pipeline's events step: a tracker and the analytics per source, run in frame order after decoding.

    stage = EventStage(TrackerConfig("bytetrack"), analytics_config)
    result, events = stage.process(frame.source, result, frame.capture_time)

Track ids are unique across the sources of one run (one counter); each source has its own tracks,
and the lines and zones apply to every source, their counts summed (:attr:`EventStage.counts`).
``register_metrics`` puts the counters on a ``/metrics`` registry (prometheus-client).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from edge.events.analytics import Analytics, AnalyticsConfig, Counts
from edge.events.tracking import Tracker, TrackerConfig
from edge.results import Detections, Result


@dataclass(frozen=True)
class AnalyticsView:
    """What the overlay draws for one frame: the lines and zones, and the counts after that frame."""

    config: AnalyticsConfig
    counts: dict[str, Any]


class EventStage:
    def __init__(self, tracker: TrackerConfig | None, analytics: AnalyticsConfig | None = None) -> None:
        if analytics and tracker is None:
            tracker = TrackerConfig()
        if tracker is not None:
            _load_scipy()  # now, not on the first frame: a missing package fails the run before it starts
        self.tracker_config = tracker
        self.analytics_config = analytics if analytics else None
        self.counts = Counts.for_config(analytics or AnalyticsConfig())
        self._ids = itertools.count(1)
        self._trackers: dict[str, Tracker] = {}
        self._analytics: dict[str, Analytics] = {}
        self._alive: dict[str, int] = {}
        self.tracks_alive = 0

    def describe(self) -> str:
        parts = []
        if self.tracker_config is not None:
            parts.append(f"tracker {self.tracker_config.kind}")
        if self.analytics_config is not None:
            parts.append(f"{len(self.analytics_config.lines)} line(s), {len(self.analytics_config.zones)} zone(s)")
        return ", ".join(parts) or "none"

    def process(self, source: str, result: Result, when: float) -> tuple[Result, list[dict[str, Any]] | None]:
        """``result`` with track ids, and the frame's events (None when no analytics are configured)."""
        if self.tracker_config is None or not isinstance(result, Detections):
            return result, ([] if self.analytics_config is not None else None)
        tracker = self._trackers.get(source)
        if tracker is None:
            tracker = self._trackers[source] = Tracker(self.tracker_config, self._ids)
        result = tracker.update(result)
        alive = tracker.alive()
        self._alive[source] = len(alive)
        self.tracks_alive = sum(self._alive.values())
        if self.analytics_config is None:
            return result, None
        analytics = self._analytics.get(source)
        if analytics is None:
            analytics = self._analytics[source] = Analytics(self.analytics_config, self.counts)
        return result, analytics.update(result, when, alive)

    def view(self) -> AnalyticsView | None:
        if self.analytics_config is None:
            return None
        return AnalyticsView(self.analytics_config, self.counts.snapshot())

    def status(self) -> dict[str, Any]:
        """For ``/v1/status`` and the summary: the tracker, live tracks, and the counts."""
        out: dict[str, Any] = {"tracker": self.tracker_config.kind if self.tracker_config else None}
        if self.tracker_config is not None:
            out["tracks"] = self.tracks_alive
        if self.analytics_config is not None:
            out.update(self.counts.snapshot())
        return out

    def register_metrics(self, registry: Any) -> None:
        """Line crossings, zone entries/exits and occupancy on a prometheus-client registry."""
        registry.register(_Collector(self))


def _load_scipy() -> None:
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        from edge.errors import ConfigError

        raise ConfigError("tracking needs scipy: pip install -e '.[events]' (or pip install scipy)") from None


class _Collector:
    """Reads the stage's plain counters when ``/metrics`` is scraped (nothing to do per frame)."""

    def __init__(self, stage: EventStage) -> None:
        self.stage = stage

    def describe(self) -> list[Any]:
        return []  # families are created at collect time; nothing to check for clashes up front

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.stage.counts.snapshot()
        crossings = CounterMetricFamily(
            "edge_line_crossings", "Tracks that crossed a line, by line and direction", labels=["line", "direction"]
        )
        for line, by_dir in snap["lines"].items():
            for direction, n in by_dir.items():
                crossings.add_metric([line, direction], n)
        entries = CounterMetricFamily("edge_zone_entries", "Tracks that entered a zone", labels=["zone"])
        exits = CounterMetricFamily("edge_zone_exits", "Tracks that left a zone", labels=["zone"])
        occupancy = GaugeMetricFamily("edge_zone_occupancy", "Tracks inside a zone now", labels=["zone"])
        for zone, c in snap["zones"].items():
            entries.add_metric([zone], c["entered"])
            exits.add_metric([zone], c["left"])
            occupancy.add_metric([zone], c["occupancy"])
        tracks = GaugeMetricFamily("edge_tracks", "Confirmed tracks alive (tracked or briefly lost)")
        tracks.add_metric([], self.stage.tracks_alive)
        yield from (crossings, entries, exits, occupancy, tracks)
