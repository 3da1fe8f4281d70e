"""Running ``nvpmodel`` and ``jetson_clocks`` without ever hanging on them.

Both tools are found on ``PATH`` (tests put recording stand-ins first). Every run has stdin on
``/dev/null`` and a timeout: ``nvpmodel -m`` asks ``DO YOU WANT TO REBOOT NOW? enter YES/yes`` for some
modes and would wait forever on a terminal or a service's open stdin; here it reads end-of-file,
prints ``NVPM ERROR: bad input!`` and gives up, and :func:`check` turns that into "reboot required".
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from edge.errors import PowerError

log = logging.getLogger(__name__)

REBOOT_MARK = "reboot required"
_PERMISSION_MARKS = (
    "permission denied",
    "operation not permitted",
    "as a root user",
    "as root",
    "must be root",
)
# nvpmodel as a normal user: "NVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13" (EACCES)
_EACCES = re.compile(r"error opening \S+:\s*13\b")
SUDO_HINT = "run it with sudo, or install jetson-stats so that its jtop service (which runs as root) makes the change"


@dataclass(frozen=True)
class ToolRun:
    """One finished run: the command line, exit status and both output streams together."""

    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    @property
    def reboot_required(self) -> bool:
        return REBOOT_MARK in self.output.lower()

    @property
    def permission_denied(self) -> bool:
        low = self.output.lower()
        return any(mark in low for mark in _PERMISSION_MARKS) or _EACCES.search(low) is not None

    def last_error(self) -> str:
        """The most telling line of the output (the last ``ERROR`` line, else the last line)."""
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        return (errors or lines or [f"exit status {self.returncode}"])[-1]


def which(tool: str) -> str | None:
    return shutil.which(tool)


def run_tool(argv: Sequence[str], timeout: float) -> ToolRun:
    """Run ``argv`` with stdin closed and a timeout; missing tools and timeouts are :class:`PowerError`."""
    exe = which(argv[0])
    if exe is None:
        raise PowerError(f"{argv[0]} not found on PATH: it comes with JetPack (package nvidia-l4t-tools / nvpmodel)")
    log.debug("running %s", " ".join(argv))
    try:
        proc = subprocess.run(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired as exc:
        raise PowerError(
            f"{' '.join(argv)} did not finish within {timeout:g}s (killed); "
            "if it waits for a reboot confirmation, run it by hand and answer the prompt"
        ) from exc
    except OSError as exc:
        raise PowerError(f"could not run {' '.join(argv)}: {exc.strerror or exc}") from exc
    out = proc.stdout.decode("utf-8", errors="replace")
    log.debug("%s -> %d: %s", " ".join(argv), proc.returncode, out.strip())
    return ToolRun(tuple(argv), proc.returncode, out)


def check(run: ToolRun, what: str) -> ToolRun:
    """Raise the right :class:`PowerError` for a failed change (reboot prompt, no permission, other)."""
    if run.reboot_required:
        raise PowerError(
            f"{what}: reboot required; nothing was changed. Run `sudo {run.command}` by hand, "
            "answer YES and let the device reboot"
        )
    if run.permission_denied:
        raise PowerError(f"{what}: permission denied ({run.last_error()}); {SUDO_HINT}")
    failed = run.returncode != 0 or "NVPM ERROR" in run.output
    if failed:
        raise PowerError(f"{what}: {run.command} failed: {run.last_error()}")
    return run
