"""Changing a Jetson's power mode and clocks, verified and rolled back on failure.

Two ways to the same device: jetson-stats' ``jtop`` service (root, so clients need no sudo) when it
answers, else the ``nvpmodel`` and ``jetson_clocks`` commands (which need root). :func:`open_controller`
picks one; both satisfy :class:`PowerController`. Modes are addressed by name and resolved to the id
from the device's own list, never from a table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge.errors import PowerError
from edge.power import device
from edge.power.device import Mode, ModeList
from edge.power.tools import SUDO_HINT, check, run_tool, which

log = logging.getLogger(__name__)

CLOCKS_STATE = "var/lib/edge/jetson_clocks.conf"


class PowerController(Protocol):
    backend: str

    def modes(self) -> ModeList:
        """The device's modes (from the device, not from a profile)."""

    def current_mode(self) -> Mode:
        """The mode the device runs in now."""

    def set_mode(self, name: str) -> Mode:
        """Switch to the mode called ``name``; verified afterwards, rolled back when it did not take."""

    def clocks_pinned(self) -> bool | None:
        """Whether jetson_clocks has pinned the clocks (None: cannot tell)."""

    def set_clocks(self, on: bool) -> None:
        """Pin (``on``) or release the clocks; the state before pinning is stored to come back later."""

    def restore_clocks(self) -> None:
        """Put the clocks back as they were before the last pinning."""


class CliController:
    """The ``nvpmodel`` / ``jetson_clocks`` commands, with files read under ``sysroot``."""

    backend = "cli"

    def __init__(
        self,
        sysroot: str | Path = "/",
        *,
        euid: int | None = None,
        state_file: str | Path | None = None,
        timeout: float = 60.0,
        query_timeout: float = 15.0,
    ) -> None:
        self.sysroot = Path(sysroot)
        self.euid = os.geteuid() if euid is None else euid
        self.state_file = Path(state_file) if state_file else device.path_in(sysroot, CLOCKS_STATE)
        self.timeout = timeout
        self.query_timeout = query_timeout
        self._modes: ModeList | None = None

    # -- reading -------------------------------------------------------------------------------
    def modes(self) -> ModeList:
        if self._modes is None:
            self._modes = self._read_modes()
        return self._modes

    def _read_modes(self) -> ModeList:
        if which("nvpmodel"):
            listed = device.parse_nvpmodel_verbose(run_tool(["nvpmodel", "-p", "--verbose"], self.query_timeout).output)
            if listed.modes:
                return listed
        conf = device.read_conf(self.sysroot)
        if conf is not None and conf.modes:
            return conf
        raise PowerError(
            "cannot read this device's power modes: `nvpmodel -p --verbose` listed none and "
            f"/{device.CONF_PATH} has no POWER_MODEL blocks; check that JetPack's nvpmodel is installed"
        )

    def current_mode(self) -> Mode:
        if which("nvpmodel"):
            found = device.parse_nvpmodel_query(run_tool(["nvpmodel", "-q"], self.query_timeout).output)
            if found is not None:
                return found
        mode_id = device.read_status_id(self.sysroot)
        if mode_id is not None:
            mode = self.modes().by_id(mode_id)
            if mode is not None:
                return mode
        raise PowerError(
            f"cannot tell the current power mode: `nvpmodel -q` gave no mode and /{device.STATUS_PATH} "
            "names none this device knows"
        )

    def clocks_pinned(self) -> bool | None:
        return device.clocks_pinned(self.sysroot)

    # -- changing ------------------------------------------------------------------------------
    def _need_root(self, what: str) -> None:
        if self.euid != 0:
            raise PowerError(f"{what} needs root (running as uid {self.euid}); {SUDO_HINT}")

    def set_mode(self, name: str) -> Mode:
        target = self.modes().resolve(name)
        before = self.current_mode()
        if before.id == target.id:
            return target
        what = f"switching the power mode to {target.name}"
        self._need_root(what)
        pinned = self.clocks_pinned()
        try:
            check(run_tool(["nvpmodel", "-m", str(target.id)], self.timeout), what)
        except PowerError:
            self._roll_back_mode(before)
            raise
        now = self.current_mode()
        if now.id != target.id:
            self._roll_back_mode(before)
            raise PowerError(
                f"{what}: nvpmodel reported success but the device is in {now}; rolled back to {before.name}"
            )
        log.info("power mode %s -> %s", before.name, target.name)
        if pinned:
            # jetson_clocks pins at the *mode's* maximum: pin again at the new mode's (as jtop does).
            check(run_tool(["jetson_clocks"], self.timeout), f"pinning the clocks again in {target.name}")
        return target

    def _roll_back_mode(self, before: Mode) -> None:
        """Put ``before`` back when a failed switch left the device elsewhere (best effort, logged)."""
        try:
            now = self.current_mode()
            if now.id == before.id:
                return
            check(run_tool(["nvpmodel", "-m", str(before.id)], self.timeout), f"rolling back to {before.name}")
            log.warning("power mode rolled back to %s", before.name)
        except PowerError as exc:
            log.error("could not roll back the power mode to %s: %s", before.name, exc)

    def set_clocks(self, on: bool) -> None:
        pinned = self.clocks_pinned()
        if on:
            if pinned:
                return
            self._need_root("pinning the clocks")
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            check(run_tool(["jetson_clocks", "--store", str(self.state_file)], self.timeout), "storing the clocks")
            check(run_tool(["jetson_clocks"], self.timeout), "pinning the clocks")
            if self.clocks_pinned() is False:
                self.restore_clocks()
                raise PowerError("pinning the clocks: jetson_clocks ran but the clocks are not pinned; restored them")
            return
        if pinned is False:
            return
        if not self.state_file.exists():
            raise PowerError(
                f"releasing the clocks: they were pinned outside edge and no stored state exists at {self.state_file}; "
                "run `sudo jetson_clocks --restore FILE` with the file stored before pinning, or reboot"
            )
        self.restore_clocks()

    def restore_clocks(self) -> None:
        if not self.state_file.exists():
            raise PowerError(
                f"restoring the clocks: nothing stored at {self.state_file} (`edge power clocks on` stores it)"
            )
        self._need_root("restoring the clocks")
        check(run_tool(["jetson_clocks", "--restore", str(self.state_file)], self.timeout), "restoring the clocks")
        self.state_file.unlink(missing_ok=True)
        if self.clocks_pinned():
            raise PowerError("restoring the clocks: jetson_clocks --restore ran but the clocks are still pinned")


class JtopController:
    """Changes through jetson-stats' jtop service (root, so no sudo); reading and checking through ``cli``.

    The mode list, the current mode and the clock state are read the same way as for the CLI backend
    (none of that needs root), so every change jtop makes is verified independently. jtop is known to
    crash-loop on unknown or custom modes: any failure (an exception, or a change that does not show
    up within ``updates`` jtop ticks) hands the operation to the commands, which report precisely why.
    """

    backend = "jtop"

    def __init__(self, factory: Callable[[], Any], cli: CliController, *, updates: int = 10) -> None:
        self._factory = factory
        self.cli = cli
        self.updates = updates

    def modes(self) -> ModeList:
        return self.cli.modes()

    def current_mode(self) -> Mode:
        return self.cli.current_mode()

    def clocks_pinned(self) -> bool | None:
        return self.cli.clocks_pinned()

    def _through_jtop(self, what: str, change: Callable[[Any], None], done: Callable[[], bool]) -> bool:
        """Make ``change`` on a jtop connection and wait (jtop ticks, not sleeps) until ``done()``."""
        try:
            with self._factory() as j:
                change(j)
                for _ in range(self.updates):
                    if done() or not j.ok():
                        break
            if done():
                return True
            log.warning("jtop did not finish %s; trying the command", what)
        except Exception as exc:  # JtopException, a crashed service, a mode jtop does not know...
            log.warning("jtop failed at %s (%s); trying the command", what, exc)
        return False

    def set_mode(self, name: str) -> Mode:
        target = self.modes().resolve(name)
        if self.current_mode().id == target.id:
            return target

        def change(j: Any) -> None:
            j.nvpmodel = target.name

        if self._through_jtop(f"switching to {target.name}", change, lambda: self.current_mode().id == target.id):
            return target
        return self.cli.set_mode(name)

    def set_clocks(self, on: bool) -> None:
        def change(j: Any) -> None:
            j.jetson_clocks = on

        if not self._through_jtop("setting jetson_clocks", change, lambda: self.clocks_pinned() is on):
            self.cli.set_clocks(on)

    def restore_clocks(self) -> None:
        if self.cli.state_file.exists():
            self.cli.restore_clocks()
        else:
            self.set_clocks(False)


def _jtop_factory() -> Callable[[], Any] | None:
    """jtop's client class when jetson-stats is installed and its service answers, else None."""
    try:
        from jtop import jtop  # jetson-stats, the `jetson` extra
    except ImportError:
        return None
    try:
        with jtop() as j:
            if not j.ok():
                return None
    except Exception as exc:  # JtopException: service not running, version mismatch...
        log.info("jtop service does not answer (%s); using nvpmodel/jetson_clocks", exc)
        return None
    return jtop


def open_controller(sysroot: str | Path = "/", backend: str = "auto", *, euid: int | None = None) -> PowerController:
    """A controller for this Jetson: ``auto`` (jtop when its service answers, else CLI), ``jtop`` or ``cli``.

    Raises :class:`~edge.errors.NotJetsonError` on anything but a Jetson. jtop reads the real
    machine, so a sysroot other than ``/`` always uses the commands.
    """
    device.require_jetson(sysroot)
    cli = CliController(sysroot, euid=euid)
    if backend == "jtop" and Path(sysroot).resolve() != Path("/"):
        raise PowerError(
            f"--backend jtop talks to the jtop service of this machine, not to files under {sysroot}; "
            "use --backend cli with --sysroot"
        )
    if backend == "cli" or Path(sysroot).resolve() != Path("/"):
        return cli
    factory = _jtop_factory()
    if factory is None:
        if backend == "jtop":
            raise PowerError(
                "jtop is not available: install jetson-stats (`pip install edge-kit[jetson]`) and start jtop.service"
            )
        return cli
    return JtopController(factory, cli)
