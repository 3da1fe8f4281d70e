"""From detections to events: tracking (:mod:`edge.events.tracking`), line and zone analytics
(:mod:`edge.events.analytics`), and the pipeline step that runs both per source (:mod:`edge.events.stage`).

    from edge.events import Analytics, AnalyticsConfig, LineSpec, Tracker, TrackerConfig

``import edge`` does not import this package; the pipeline loads it only when a run config asks for a
tracker or analytics. Only numpy here; scipy (the assignment) is imported by the first tracker update.
"""

from edge.events.analytics import Analytics, AnalyticsConfig, Counts, LineSpec, ZoneSpec
from edge.events.stage import EventStage
from edge.events.tracking import TRACKERS, Tracker, TrackerConfig

__all__ = [
    "TRACKERS",
    "Analytics",
    "AnalyticsConfig",
    "Counts",
    "EventStage",
    "LineSpec",
    "Tracker",
    "TrackerConfig",
    "ZoneSpec",
]
