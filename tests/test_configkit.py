"""edge.configkit: typed fields, key paths in errors, unknown keys refused."""

from __future__ import annotations

import re

import pytest

from edge.configkit import Reader, parse_duration
from edge.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        (" 10 ", 10.0),
        ("ten", "expected a duration such as 30s"),
        (-1, "cannot be negative"),
        (True, "expected a duration"),
        ("5 days", "expected a duration"),
    ],
)
def test_parse_duration(value: object, expected: float | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            parse_duration(value, "power.idle_after")
    else:
        assert parse_duration(value, "power.idle_after") == expected


@pytest.mark.parametrize(
    ("data", "read", "expected"),
    [
        ({"n": 3}, lambda r: r.int("n", min=1), 3),
        ({"n": 0}, lambda r: r.int("n", min=1), "pipeline.n: must be >= 1, got 0"),
        ({"n": True}, lambda r: r.int("n"), "pipeline.n: expected an integer, got True"),
        ({"x": 1}, lambda r: r.float("x"), 1.0),
        ({"x": "1"}, lambda r: r.float("x"), "pipeline.x: expected a number"),
        ({}, lambda r: r.str("mode"), "pipeline.mode: required key is missing"),
        ({}, lambda r: r.str("mode", "MAXN"), "MAXN"),
        ({"mode": None}, lambda r: r.str("mode", "MAXN"), "MAXN"),
        ({"c": "on"}, lambda r: r.str("c", choices=("on", "off")), "on"),
        ({"c": "up"}, lambda r: r.str("c", choices=("on", "off")), "pipeline.c: 'up' is not one of on, off"),
        ({"b": "yes"}, lambda r: r.bool("b"), "pipeline.b: expected true or false"),
        ({"l": "a"}, lambda r: r.list("l"), "pipeline.l: expected a list"),
        ({"d": "2m"}, lambda r: r.duration("d"), 120.0),
        ({"s": {"k": 1}}, lambda r: r.section("s").int("k"), 1),
        ({"s": 5}, lambda r: r.section("s"), "pipeline.s: expected a mapping"),
    ],
)
def test_reader_fields(data: dict[str, object], read: object, expected: object) -> None:
    reader = Reader(data, "pipeline")
    if isinstance(expected, str) and ":" in expected:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            read(reader)  # type: ignore[operator]
    else:
        assert read(reader) == expected  # type: ignore[operator]


def test_unknown_keys_are_errors_naming_the_path_and_known_keys() -> None:
    reader = Reader({"mode": "MAXN", "clock": "on"}, "power")
    reader.str("mode")
    with pytest.raises(ConfigError, match=re.escape("power.clock: unknown key (known keys here: mode)")):
        reader.finish()


def test_finish_passes_when_every_key_was_read() -> None:
    reader = Reader({"mode": "MAXN"}, "power")
    reader.str("mode")
    reader.finish()


def test_non_mapping_root_is_refused() -> None:
    with pytest.raises(ConfigError, match="config: expected a mapping of keys to values, got list"):
        Reader([1, 2], "")
