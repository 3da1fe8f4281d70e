"""``edge power``: power modes, clocks and telemetry, on a Jetson (nvpmodel, jetson_clocks) and on desktop
and server GPUs (NVML power limits and locked clocks).

    edge power status [--json]        mode, modes, clocks, temperatures, load, power
    edge power modes [--json]         the modes (Jetson: cross-checked with the platform profile)
    edge power set NAME               Jetson: an nvpmodel mode by name; desktop: max, balanced, eco or 180W
    edge power restore                put back what edge changed (desktop limits and clocks, Jetson clocks and mode)
    edge power clocks on|off|restore  Jetson: jetson_clocks (state stored and restored)
    edge power clocks lock MIN,MAX|reset   desktop: lock the graphics clock (MHz) or release it

Neither a Jetson nor a GPU through NVML: one ``error:`` line and exit code 8.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = """Power modes (by name), clocks and telemetry on a Jetson or on desktop/server NVIDIA GPUs.

  edge power status [--json]              mode, modes, clocks, temperatures, load, power
  edge power modes [--json]               the modes (Jetson: cross-checked with the platform profile)
  edge power set NAME                     Jetson: nvpmodel mode (MAXN, 15W...); desktop: max, balanced,
                                          eco (100/75/50 % of the default power limit) or a wattage (180W)
  edge power restore                      put back what edge changed (desktop: limits and clocks, from
                                          the state file; Jetson: the clocks stored by `clocks on` and
                                          the mode from before the first `set`)
  edge power clocks on|off|restore        Jetson: jetson_clocks, previous state stored and restored
  edge power clocks lock MIN,MAX|reset    desktop: lock the graphics clock to MIN..MAX MHz, or release it

Jetson: jetson-stats' jtop service when it answers, else nvpmodel / jetson_clocks (root needed).
Desktop: NVML (nvidia-ml-py), root needed to change anything; --gpu N|UUID picks GPUs (default all).
See docs/power.md."""
EXIT_CODES = "exit codes: 0 ok, 2 bad arguments, 7 power control failed (e.g. no root), 8 neither a Jetson nor NVML"


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sysroot", default="/", help="root of a Jetson's file tree (default /)")
    common.add_argument(
        "--backend",
        choices=("auto", "jtop", "cli"),
        default="auto",
        help="Jetson: jtop service or nvpmodel/jetson_clocks",
    )
    common.add_argument(
        "--gpu", action="append", metavar="N|UUID", help="desktop: this GPU only (repeatable; default all)"
    )
    parser = subparsers.add_parser(
        "power",
        help="power modes, clocks and telemetry (Jetson and NVML GPUs)",
        description=HELP,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="power_command", metavar="ACTION", required=True)
    p = sub.add_parser("status", parents=[common], help="mode, clocks, temperatures, load, power")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)
    p = sub.add_parser("modes", parents=[common], help="the power modes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_modes)
    p = sub.add_parser("set", parents=[common], help="switch the power mode (Jetson: by name; desktop: eco...)")
    p.add_argument("name", help="Jetson: MAXN, 15W, MAXN_SUPER...; desktop: max, balanced, eco or a wattage (180W)")
    p.set_defaults(func=_set)
    p = sub.add_parser("restore", parents=[common], help="put back what edge changed")
    p.set_defaults(func=_restore)
    p = sub.add_parser("clocks", parents=[common], help="Jetson: on/off/restore; desktop: lock MIN,MAX / reset")
    p.add_argument("state", choices=("on", "off", "restore", "lock", "reset"))
    p.add_argument("range", nargs="?", metavar="MIN,MAX", help="for lock: graphics clock range in MHz")
    p.set_defaults(func=_clocks)


# -- which machine -------------------------------------------------------------------------------
def _is_jetson(args: argparse.Namespace) -> bool:
    from edge.power import device

    return device.jetson_info(args.sysroot) is not None


def _controller(args: argparse.Namespace) -> Any:
    from edge.power.control import open_controller

    return open_controller(args.sysroot, args.backend)


def _desktop(args: argparse.Namespace) -> Any:
    """The NVML GPUs (``NvmlPower``), or the one exit-8 line when this machine has no NVML either."""
    from edge.errors import PowerError
    from edge.power import device
    from edge.power.nvml import NvmlPower

    try:
        return NvmlPower(args.gpu)
    except PowerError as exc:
        if args.gpu and str(exc).startswith("--gpu"):
            raise
        raise device.not_jetson(args.sysroot, exc) from exc


# -- subcommands ---------------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    if not _is_jetson(args):
        with _desktop(args) as power:
            gpus = power.gpus()
        if args.json:
            print(json.dumps({"jetson": False, "backend": "nvml", "gpus": [g.as_dict() for g in gpus]}, indent=2))
            return 0
        for g in gpus:
            print(_gpu_line(g))
        return 0
    from edge.power.report import status_report

    report = status_report(_controller(args), args.sysroot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    tel = report["telemetry"]
    print(f"device: {report['model'] or '?'} ({report['release'] or 'no nv_tegra_release'})")
    print(f"mode: {report['current']['name']} (id {report['current']['id']}), backend {report['backend']}")
    print("modes: " + ", ".join(f"{m['name']} ({m['id']})" for m in report["modes"]))
    pinned = report["clocks_pinned"]
    print(f"clocks: {'unknown' if pinned is None else 'pinned (jetson_clocks)' if pinned else 'not pinned'}")
    temps = ", ".join(f"{k} {v:.1f}C" for k, v in tel["temperatures_c"].items())
    print(f"temperatures: {temps or 'none readable'}")
    print(f"GPU load: {_num(tel['gpu_load_pct'], '%')}")
    rails = ", ".join(f"{r['name']} {r['power_w']:.2f}W" for r in tel["rails"])
    print(f"power: {rails or 'no INA3221 rails'}" + (f"; total {tel['power_w']:.2f}W" if tel["power_w"] else ""))
    return 0


def _modes(args: argparse.Namespace) -> int:
    if not _is_jetson(args):
        from edge.power.nvml import MODES

        with _desktop(args) as power:
            gpus = power.gpus()
        if args.json:
            shares = {name: share for name, share in MODES}
            print(json.dumps({"backend": "nvml", "shares": shares, "gpus": [g.as_dict() for g in gpus]}, indent=2))
            return 0
        for g in gpus:
            current = g.mode_name()
            modes = ", ".join(
                f"{name} {_watts(g.as_dict()['modes'][name])}" + (" (current)" if name == current else "")
                for name, _ in MODES
            )
            accepts = f"; accepts {g.min_w:g}-{g.max_w:g}W" if g.min_w is not None and g.max_w is not None else ""
            print(f"GPU {g.index} {g.name}: {modes}{accepts}")
        print("modes: max = 100 %, balanced = 75 %, eco = 50 % of the default power limit; or a wattage (180W)")
        return 0
    from edge.power.report import modes_report

    report = modes_report(_controller(args), args.sysroot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    default = (report["default"] or {}).get("id")
    print(f"{'ID':>3}  NAME")
    for m in report["modes"]:
        marks = [
            w for w, on in (("current", m["id"] == report["current"]["id"]), ("default", m["id"] == default)) if on
        ]
        print(f"{m['id']:>3}  {m['name']}" + (f"  ({', '.join(marks)})" if marks else ""))
    print(f"source: {report['source']}")
    check = report["profile_check"]
    if check["match"] is True:
        flash = " (Super flash)" if check.get("super_flash") else ""
        print(f"profile {check['profile']}{flash}: modes match")
    elif check["match"] is False:
        print(f"warning: modes differ from profile {check['profile']}: " + "; ".join(check["differences"]))
    else:
        print("profile: " + "; ".join(check["differences"]))
    return 0


def _set(args: argparse.Namespace) -> int:
    if not _is_jetson(args):
        with _desktop(args) as power:
            for gpu, watts in power.set_limit(args.name):
                name = args.name.lower() if args.name.lower() in ("max", "balanced", "eco") else f"{watts:g}W"
                print(
                    f"GPU {gpu.index} {gpu.name}: power limit {_watts(gpu.limit_w)} -> {_watts(watts)} ({name}), "
                    f"verified; `edge power restore` puts {_watts(gpu.limit_w)} back"
                )
        return 0
    ctl = _controller(args)
    before = ctl.current_mode()
    record = _mode_record(args)
    mode = ctl.set_mode(args.name)
    if mode.id == before.id:
        print(f"power mode: already {mode.name} (id {mode.id})")
    else:
        if not record.exists():  # the mode before edge's first change, for `edge power restore`
            _write_record(record, {"id": before.id, "name": before.name})
        print(f"power mode: {before.name} -> {mode.name} (id {mode.id}), verified")
    return 0


def _mode_record(args: argparse.Namespace) -> Any:
    from edge.power import device

    return device.path_in(args.sysroot, "var/lib/edge/nvpmodel-mode.json")


def _write_record(path: Any, data: dict[str, Any]) -> None:
    from edge.errors import PowerError
    from edge.fsutil import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data) + "\n")
    except OSError as exc:
        raise PowerError(f"the mode changed, but {path} could not be written ({exc}); restore by name") from exc


def _restore(args: argparse.Namespace) -> int:
    if not _is_jetson(args):
        with _desktop(args) as power:
            done = power.restore()
            if not done:
                print(f"nothing to restore: no change by edge recorded in {power.state_file}")
            for gpu, watts, clocks in done:
                parts = [f"power limit back to {_watts(watts)}"] if watts is not None else []
                parts += ["clocks released"] if clocks else []
                print(f"GPU {gpu.index} {gpu.name}: " + ", ".join(parts or ["nothing recorded"]))
        return 0
    ctl = _controller(args)
    state = getattr(ctl, "cli", ctl).state_file
    record = _mode_record(args)
    if not state.exists() and not record.exists():
        print(f"nothing to restore: no clocks stored at {state} and no mode recorded at {record}")
        return 0
    if state.exists():
        ctl.restore_clocks()
        print("clocks: restored (not pinned)" if not ctl.clocks_pinned() else "clocks: restored (pinned)")
    if record.exists():
        try:
            name = str(json.loads(record.read_text(encoding="utf-8"))["name"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            from edge.errors import PowerError

            raise PowerError(f"cannot read {record} ({exc}); remove it and set the mode by name") from exc
        before = ctl.current_mode()
        mode = ctl.set_mode(name)
        record.unlink()
        print(f"power mode: {before.name} -> {mode.name} (id {mode.id}), as before edge's first change")
    return 0


def _clocks(args: argparse.Namespace) -> int:
    from edge.errors import ConfigError, PowerError

    jetson = _is_jetson(args)
    if args.state in ("lock", "reset") and jetson:
        raise PowerError(f"clocks {args.state} is for desktop GPUs (NVML); on a Jetson use clocks on|off|restore")
    if args.range is not None and args.state != "lock":
        raise ConfigError(f"clocks {args.state} takes no range (only `clocks lock MIN,MAX` does)")
    if not jetson:
        lo, hi = _clock_range(args) if args.state == "lock" else (None, None)
        with _desktop(args) as power:
            if args.state in ("lock", "on"):
                for gpu, a, b in power.lock_clocks(lo, hi):
                    print(f"GPU {gpu.index} {gpu.name}: graphics clock locked to {a}-{b} MHz")
            else:
                power.reset_clocks()
                for gpu in power.gpus():
                    print(f"GPU {gpu.index} {gpu.name}: graphics clock released")
        return 0
    ctl = _controller(args)
    if args.state == "restore":
        ctl.restore_clocks()
    else:
        ctl.set_clocks(args.state == "on")
    pinned = ctl.clocks_pinned()
    print(f"clocks: {'unknown' if pinned is None else 'pinned' if pinned else 'not pinned'}")
    return 0


def _clock_range(args: argparse.Namespace) -> tuple[int, int]:
    from edge.errors import ConfigError

    text = args.range or ""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"clocks lock {text or '(nothing)'}: expected MIN,MAX in MHz, e.g. clocks lock 1200,1800")
    lo, hi = (int(p) for p in parts)
    if lo > hi or hi == 0:
        raise ConfigError(f"clocks lock {text}: expected MIN <= MAX, both in MHz")
    return lo, hi


def _gpu_line(g: Any) -> str:
    clocks = "locked by edge" if g.clocks_locked else "not locked by edge"
    accepts = f", accepts {g.min_w:g}-{g.max_w:g}W" if g.min_w is not None and g.max_w is not None else ""
    return (
        f"GPU {g.index} {g.name}: {_num(g.power_w, 'W')} now, limit {_watts(g.limit_w)} ({g.mode_name()}), "
        f"default {_watts(g.default_w)}{accepts}; clocks {clocks}"
    )


def _watts(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}W"


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f}{unit}"
