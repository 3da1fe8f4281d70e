"""From detections to events: tracking (:mod:`edge.events.tracking`), line and zone analytics
(:mod:`edge.events.analytics`), and the pipeline step that runs both per source (:mod:`edge.events.stage`).

Nothing here is imported by ``import edge``; the pipeline loads it only when a run config asks for a
tracker or analytics.
"""
