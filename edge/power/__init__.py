"""Power modes, clocks and telemetry on Jetsons and NVML GPUs, and power policies for ``edge run``.

- :mod:`edge.power.config`: the run config's ``power:`` section (:class:`PowerConfig`).
- :mod:`edge.power.device`: reading a Jetson's identity, modes, status and clocks from files under a sysroot.
- :mod:`edge.power.tools`: running nvpmodel / jetson_clocks (stdin closed, timeouts, reboot and root detection).
- :mod:`edge.power.control`: changing mode and clocks (jtop when its service answers, else the CLI tools),
  verified and rolled back on failure.
- :mod:`edge.power.telemetry`: thermal zones, GPU load, INA3221 rails, NVML on desktops; a sampler thread.
- :mod:`edge.power.report`: what ``edge power status`` / ``modes`` print, with the profile cross-check.
- :mod:`edge.power.policy`: :class:`PowerPolicy`, the pipeline observer for idle and thermal policies.
- :mod:`edge.power.nvml`: desktop and server GPUs: power limits as named modes (max, balanced, eco) or
  watts, locked clocks, a state file to restore from, and the same controller interface for policies.
- :mod:`edge.power.bench`: fps, watts and fps/W per desktop power mode (``edge bench --power``).

Nothing here imports a heavy library at module level (``jtop`` and ``pynvml`` load lazily).
"""

from __future__ import annotations

from edge.power.config import PowerConfig

__all__ = ["PowerConfig"]
