"""The run config: typed fields, key paths in errors, unknown keys are errors (good and bad in one table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import RunConfig, load_run_config
from edge.errors import ConfigError

BASE: dict[str, Any] = {"model": "face.bundle", "source": "test://"}


@pytest.mark.parametrize(
    ("data", "check", "error"),
    [
        (BASE, lambda c: c.model.bundle == "face.bundle" and c.sources == ["test://"] and c.sinks == [], None),
        (
            {**BASE, "model": {"bundle": "b", "backend": "onnxruntime-cpu", "warmup": 0, "threads": 1}},
            lambda c: (c.model.backend, c.model.warmup, c.model.threads) == ("onnxruntime-cpu", 0, 1),
            None,
        ),
        ({**BASE, "model": {"bundle": "b", "backend": "auto"}}, lambda c: c.model.backend is None, None),
        (
            {"model": "b", "sources": ["test://", "file://clip.mp4"], "sinks": ["jsonl://e.jsonl", "file://o.mp4"]},
            lambda c: len(c.sources) == 2 and len(c.sinks) == 2,
            None,
        ),
        (
            {**BASE, "pipeline": {"fps_cap": 15, "stride": 2, "max_frames": 10, "duration": "5m", "batch": 4}},
            lambda c: (
                (c.pipeline.fps_cap, c.pipeline.stride, c.pipeline.duration, c.pipeline.batch) == (15.0, 2, 300.0, 4)
            ),
            None,
        ),
        ({**BASE, "power": {"mode": "MAXN"}}, lambda c: c.power is not None and c.power.mode is not None, None),
        ({**BASE, "http": {"listen": "127.0.0.1:8080", "auth": "none"}}, lambda c: c.http.port == 8080, None),
        ({**BASE, "service": {"watchdog_sec": "30s"}}, lambda c: c.service.watchdog_sec == 30.0, None),
        # errors name the key path
        ({"source": "test://"}, None, "model: required key is missing"),
        ({"model": "b"}, None, "source: required key is missing"),
        ({**BASE, "sources": ["test://"]}, None, "give either source"),
        ({"model": "b", "sources": []}, None, "sources: the list is empty"),
        ({"model": "b", "sources": ["test://", "bogus://x"]}, None, "sources[1]: unsupported source scheme bogus://"),
        ({"model": "b", "sources": ["test://", 3]}, None, "sources[1]: expected a URI string"),
        ({**BASE, "source": "test://?widht=3"}, None, "source: test://?widht=3: unknown option 'widht'"),
        ({**BASE, "sinks": ["jsonl://e.jsonl", "ftp://x"]}, None, "sinks[1]: unsupported sink scheme ftp://"),
        ({**BASE, "sinks": "e.jsonl"}, None, "sinks: expected a list"),
        ({**BASE, "pipeline": {"fps_cap": 0}}, None, "pipeline.fps_cap: must be > 0"),
        ({**BASE, "pipeline": {"stride": 0}}, None, "pipeline.stride: must be >= 1"),
        ({**BASE, "pipeline": {"stride": "2"}}, None, "pipeline.stride: expected an integer"),
        ({**BASE, "pipeline": {"duration": "soon"}}, None, "pipeline.duration: expected a duration"),
        ({**BASE, "pipeline": {"fps": 3}}, None, "pipeline.fps: unknown key"),
        ({**BASE, "model": {"bundle": "b", "backend": "tpu"}}, None, "model.backend: 'tpu' is not one of"),
        ({**BASE, "model": {"path": "b"}}, None, "model.bundle: required key is missing"),
        ({**BASE, "model": {"bundle": "b", "extra": 1}}, None, "model.extra: unknown key"),
        ({**BASE, "sink": ["e.jsonl"]}, None, "sink: unknown key"),
        (
            {**BASE, "extra": 1},
            None,
            "extra: unknown key (known keys here: model, source, sources, sinks, pipeline, power, http, service, tracker, analytics, mqtt)",
        ),
        ({**BASE, "power": {"mode": "MAXN", "turbo": True}}, None, "power.turbo: unknown key"),
        ({**BASE, "http": {"listen": "0.0.0.0:80", "auth": "none"}}, None, "http.auth"),
        ({**BASE, "service": {"watchdog_sec": 1}}, None, "service.watchdog_sec"),
        ([1, 2], None, "expected a mapping"),
    ],
)
def test_run_config(data: Any, check: Any, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError) as info:
            RunConfig.from_dict(data)
        assert error in str(info.value)
        return
    assert check(RunConfig.from_dict(data))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("model: b\nsource: test://\nsinks: [e.jsonl]\n", None),
        ("", "the file is empty"),
        ("model: [unclosed\n", "not valid YAML (line"),
        ("- model: b\n", "expected a mapping with model, source and sinks, got a list"),
        ("model: b\nsource: test://\npipeline:\n  stride: -1\n", "pipeline.stride: must be >= 1"),
    ],
)
def test_load_run_config(tmp_path: Path, text: str, error: str | None) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    if error is None:
        cfg = load_run_config(path)
        assert cfg.path == path and cfg.sinks == ["e.jsonl"]
        return
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert str(info.value).startswith(str(path)) and error in str(info.value)
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "missing.yaml")
