"""Changing a Jetson's power mode and clocks, verified and rolled back on failure.

Two ways to the same device: jetson-stats' ``jtop`` service (root, so clients need no sudo) when it
answers, else the ``nvpmodel`` and ``jetson_clocks`` commands (which need root). :func:`open_controller`
picks one; both satisfy :class:`PowerController`. Modes are addressed by name and resolved to the id
from the device's own list, never from a table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from edge.errors import NotJetsonError, PowerError, first_line
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

    def restore_mode(self, mode: Mode) -> None:
        """Put back ``mode``, read by :meth:`current_mode` before a change (a run's end)."""

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
        self.jtop_note: str | None = None  # why jtop was not used (said when root is missing)
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
                return listed.with_masks(device.read_conf(self.sysroot))
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
        pinned = device.clocks_pinned(self.sysroot)
        if pinned is None and self.euid == 0 and which("jetson_clocks"):
            # sysfs unreadable (a container without /sys): jetson_clocks --show reads the same values.
            try:
                pinned = device.parse_jetson_clocks_show(
                    run_tool(["jetson_clocks", "--show"], self.query_timeout).output
                )
            except PowerError as exc:
                log.debug("jetson_clocks --show: %s", exc)
        return pinned

    # -- changing ------------------------------------------------------------------------------
    def _need_root(self, what: str) -> None:
        if self.euid != 0:
            why = f"; jtop was not used: {self.jtop_note}" if self.jtop_note else ""
            raise PowerError(f"{what} needs root (running as uid {self.euid}){why}; {SUDO_HINT}")

    def check_live(self, before: Mode, target: Mode) -> None:
        """:class:`PowerError` with the real cause when nvpmodel would ask for a reboot for this switch."""
        modes = self.modes()
        if not modes.needs_reboot(before, target):
            return
        live = ", ".join(m.name for m in modes.live_from(before))
        masks = dict(modes.tpc_masks)
        raise PowerError(
            f"switching the power mode {before.name} -> {target.name} needs a reboot: the two modes power-gate "
            f"different GPU TPCs (TPC_PG_MASK {masks[before.id]} vs {masks[target.id]} in /{device.CONF_PATH}); "
            f"nothing was changed. Modes that switch live from {before.name}: {live}. To change for good, run "
            f"`sudo nvpmodel -m {target.id}` by hand, answer YES and let the device reboot"
        )

    def set_mode(self, name: str) -> Mode:
        target = self.modes().resolve(name)
        before = self.current_mode()
        if before.id == target.id:
            return target
        self.check_live(before, target)
        what = f"switching the power mode to {target.name}"
        self._need_root(what)
        pinned = self.clocks_pinned()
        # As jtop does: release the clocks before nvpmodel (a pinned minimum at the old mode's maximum
        # would outlive the switch) and pin again afterwards, at the new mode's maximum.
        released = False
        if pinned and self.state_file.exists():
            self.restore_clocks()
            released = True
        elif pinned:
            log.warning("clocks were pinned outside edge (no stored state): switching while pinned")
        try:
            check(run_tool(["nvpmodel", "-m", str(target.id)], self.timeout), what)
        except PowerError:
            self._roll_back_mode(before)
            if released:
                self._pin_again(before)
            raise
        now = self.current_mode()
        if now.id != target.id:
            self._roll_back_mode(before)
            if released:
                self._pin_again(before)
            raise PowerError(
                f"{what}: nvpmodel reported success but the device is in {now}; rolled back to {before.name}"
            )
        log.info("power mode %s -> %s", before.name, target.name)
        if released:
            self._pin_again(target, strict=True)
        elif pinned:
            check(run_tool(["jetson_clocks"], self.timeout), f"pinning the clocks again in {target.name}")
        return target

    def restore_mode(self, mode: Mode) -> None:
        self.set_mode(mode.name)

    def _pin_again(self, mode: Mode, strict: bool = False) -> None:
        try:
            self.set_clocks(True)
        except PowerError as exc:
            if strict:
                raise PowerError(f"pinning the clocks again in {mode.name}: {exc}") from exc
            log.error("could not pin the clocks again in %s: %s", mode.name, exc)

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
            if self.state_file.exists():
                # Left by a crash or a reboot while pinned: the clocks are not pinned now, so the file is
                # stale, and `jetson_clocks --store` with an existing FILE asks "Can I overwrite it? Y/N"
                # and exits 1 on anything but y. Replace it with the state of now.
                log.info("replacing the stale stored clocks %s (clocks are not pinned now)", self.state_file)
                self.state_file.unlink()
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
        before = self.current_mode()
        if before.id == target.id:
            return target
        self.cli.check_live(before, target)  # jtop refuses such a switch without saying why

        def change(j: Any) -> None:
            j.nvpmodel = target.name

        if self._through_jtop(f"switching to {target.name}", change, lambda: self.current_mode().id == target.id):
            return target
        return self.cli.set_mode(name)

    def restore_mode(self, mode: Mode) -> None:
        self.set_mode(mode.name)

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


def _jtop_factory() -> tuple[Callable[[], Any] | None, str | None]:
    """jtop's client class when jetson-stats is installed and its service answers, else None and why."""
    try:
        from jtop import jtop  # jetson-stats, the `jetson` extra
    except ImportError:
        return None, None
    try:
        with jtop() as j:
            if not j.ok():
                return None, "the jtop service does not answer"
    except Exception as exc:  # JtopException: service not running, version mismatch...
        why = first_line(exc, type(exc).__name__)
        if "version" in why.lower() or "mismatch" in why.lower():
            why = (
                f"{why} (the jetson-stats of this Python and the one of jtop.service differ: install the same "
                "version in both, e.g. `sudo pip3 install -U jetson-stats` and `pip install -U jetson-stats`, "
                "then `sudo systemctl restart jtop.service`)"
            )
        log.info("jtop not used: %s; using nvpmodel/jetson_clocks", why)
        return None, why
    return jtop, None


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
    factory, why = _jtop_factory()
    if factory is None:
        if backend == "jtop":
            raise PowerError(
                f"jtop is not available ({why or 'jetson-stats is not installed'}): install jetson-stats "
                "(`pip install edge-kit[jetson]`) and start jtop.service"
            )
        cli.jtop_note = why
        return cli
    return JtopController(factory, cli)


def open_power_controller(
    sysroot: str | Path = "/", backend: str = "auto", *, gpus: Sequence[str] | None = None
) -> PowerController:
    """A Jetson's controller (:func:`open_controller`), else one for the NVML GPUs of a desktop or server.

    Raises :class:`~edge.errors.NotJetsonError` (exit code 8) when the machine has neither.
    """
    if device.jetson_info(sysroot) is not None:
        return open_controller(sysroot, backend)
    from edge.power.nvml import DesktopController, NvmlPower

    try:
        return DesktopController(NvmlPower(gpus))
    except PowerError as exc:
        if gpus and "--gpu" in str(exc):
            raise
        raise no_power_control(sysroot, exc) from exc


def no_power_control(sysroot: str | Path, why: object) -> NotJetsonError:
    """The one line for a machine with neither a Jetson's tools nor an NVML GPU."""
    return device.not_jetson(sysroot, why)
