"""The run config's ``power:`` section: good and bad inputs in one table."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from edge.errors import ConfigError
from edge.power.config import PowerConfig


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, PowerConfig()),
        (None, PowerConfig()),
        (
            yaml.safe_load("mode: MAXN\nclocks: on\nidle_mode: 7W\nidle_after: 30s\nfps_idle: 2\nthermal_limit_c: 85"),
            PowerConfig("MAXN", "on", "7W", 30.0, 2.0, 85.0, 5.0, None),
        ),
        ({"clocks": "OFF"}, PowerConfig(clocks="off")),
        ({"clocks": False}, PowerConfig(clocks="off")),  # YAML 1.1 reads a bare off as false
        ({"mode": 15}, PowerConfig(mode="15")),  # a bare number: a name (or id) to resolve on the device
        ({"idle_after": "250ms", "fps_idle": 0.5}, PowerConfig(idle_after=0.25, fps_idle=0.5)),
        (
            {"thermal_limit_c": 80, "thermal_hysteresis_c": 3, "thermal_mode": "MODE_15W"},
            PowerConfig(thermal_limit_c=80.0, thermal_hysteresis_c=3.0, thermal_mode="MODE_15W"),
        ),
        (
            {"mode": "MAXN", "idle": 3},
            "power.idle: unknown key (known keys here: clocks, fps_idle, idle_after, "
            "idle_mode, mode, thermal_hysteresis_c, thermal_limit_c, thermal_mode)",
        ),
        ({"clocks": "max"}, "power.clocks: expected on or off, got 'max'"),
        ({"mode": ["MAXN"]}, "power.mode: expected a power mode name such as MAXN or 15W, got ['MAXN']"),
        ({"mode": " "}, "power.mode: empty power mode name"),
        (
            {"idle_after": "soon", "idle_mode": "7W"},
            "power.idle_after: expected a duration such as 30s, 5m or 250ms, got 'soon'",
        ),
        ({"idle_mode": "7W"}, "power.idle_after: required when idle_mode or fps_idle is set (e.g. idle_after: 30s)"),
        ({"idle_after": 30}, "power.idle_after: set idle_mode and/or fps_idle to say what idle does"),
        ({"idle_after": 0, "fps_idle": 1}, "power.idle_after: must be more than 0 seconds, got 0.0"),
        ({"idle_after": 5, "fps_idle": 0}, "power.fps_idle: must be > 0 frames per second, got 0.0"),
        ({"thermal_limit_c": 200}, "power.thermal_limit_c: must be <= 150, got 200"),
        ({"thermal_mode": "7W"}, "power.thermal_mode: needs thermal_limit_c to say when to step down"),
        ("MAXN", "power: expected a mapping of keys to values, got str"),
    ],
)
def test_power_config(data: Any, expected: PowerConfig | str) -> None:
    if isinstance(expected, PowerConfig):
        assert PowerConfig.from_dict(data) == expected
    else:
        with pytest.raises(ConfigError) as err:
            PowerConfig.from_dict(data)
        assert str(err.value) == expected


def test_enabled() -> None:
    assert not PowerConfig().enabled
    assert PowerConfig(fps_idle=1, idle_after=5).enabled
    assert PowerConfig(thermal_limit_c=80).enabled
