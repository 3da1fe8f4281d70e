"""What ``edge power status`` and ``edge power modes`` report, as JSON-ready dicts.

The device's own mode list is the truth; the platform profile's list (``platforms``) is only a
cross-check that flags a device whose flash differs from what the profile expects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.power import device
from edge.power.control import PowerController
from edge.power.device import ModeList
from edge.power.telemetry import JetsonTelemetry

log = logging.getLogger(__name__)


def profile_check(modes: ModeList, sysroot: str | Path = "/") -> dict[str, Any]:
    """Compare the device's modes with the detected profile's: ``{"profile", "super_flash", "expected", "match", "differences"}``."""
    try:
        import platforms

        machine = platforms.detect(sysroot, nvidia_smi=None, nvml=False)
    except (ImportError, EdgeError, OSError) as exc:  # the cross-check never fails a status report
        log.debug("no platform profile to cross-check against: %s", exc)
        return {"profile": None, "match": None, "differences": [f"no profile: {exc}"]}
    expected = machine.platform.modes(machine.super_flash)
    result: dict[str, Any] = {
        "profile": machine.platform.id,
        "super_flash": machine.super_flash,
        "expected": [{"id": m.id, "name": m.name} for m in expected],
    }
    if not expected:
        result.update(match=None, differences=[f"profile {machine.platform.id} lists no modes"])
        return result
    have = {(m.id, m.name) for m in modes.modes}
    want = {(m.id, m.name) for m in expected}
    diffs = [f"device has {n} (id {i}), profile does not" for i, n in sorted(have - want)]
    diffs += [f"profile expects {n} (id {i}), device does not have it" for i, n in sorted(want - have)]
    result.update(match=not diffs, differences=diffs)
    return result


def modes_report(ctl: PowerController, sysroot: str | Path = "/") -> dict[str, Any]:
    modes = ctl.modes()
    current = ctl.current_mode()
    return {
        "source": modes.source,
        "current": {"id": current.id, "name": current.name},
        "default": _mode_dict(modes, modes.default_id),
        "modes": [{"id": m.id, "name": m.name} for m in modes.modes],
        "profile_check": profile_check(modes, sysroot),
    }


def status_report(ctl: PowerController, sysroot: str | Path = "/") -> dict[str, Any]:
    info = device.require_jetson(sysroot)
    report = modes_report(ctl, sysroot)
    sample = JetsonTelemetry(sysroot)()
    report.update(
        jetson=True,
        backend=ctl.backend,
        model=info.model,
        compatible=list(info.compatible),
        release=info.release,
        clocks_pinned=ctl.clocks_pinned(),
        telemetry=sample.as_dict(),
    )
    return report


def _mode_dict(modes: ModeList, mode_id: int | None) -> dict[str, Any] | None:
    mode = modes.by_id(mode_id) if mode_id is not None else None
    return {"id": mode.id, "name": mode.name} if mode else None
