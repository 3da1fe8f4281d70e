"""Platform profiles (one data file per target) and detection of the running machine.

    import platforms
    platforms.get_target("jetson-orin-nano-8gb").power_modes_super
    # (PowerMode(id=0, name='15W'), PowerMode(id=1, name='25W'), PowerMode(id=2, name='MAXN_SUPER'), ...)
    platforms.detect().platform.id      # e.g. "rtx-ada", "cpu", or "generic" with a reason

Imports only the standard library, PyYAML and :mod:`edge.errors`.
"""

from __future__ import annotations

from platforms.detect import Machine, detect, tensorrt_warning
from platforms.profile import Platform, PowerMode
from platforms.registry import GENERIC_ID, all_targets, generic_platform, get_target, resolve_target, target_ids

__all__ = [
    "GENERIC_ID",
    "Machine",
    "Platform",
    "PowerMode",
    "all_targets",
    "detect",
    "generic_platform",
    "get_target",
    "resolve_target",
    "target_ids",
    "tensorrt_warning",
]
