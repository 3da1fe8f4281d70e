"""The camera pipeline: sources -> prepare -> infer -> finish -> sinks, each stage on its own thread.

    from edge.pipeline import Pipeline, PipelineOptions
    stats = Pipeline(model, [open_source("rtsp://...")], [open_sink("jsonl://events.jsonl")]).run()

See :mod:`edge.pipeline.core` for the threading, draining and error rules.
"""

from __future__ import annotations

from edge.pipeline.core import Pipeline, PipelineError, PipelineOptions
from edge.pipeline.stages import ModelStages, PipelineModel

__all__ = ["ModelStages", "Pipeline", "PipelineError", "PipelineModel", "PipelineOptions"]
