"""``edge power``: Jetson power modes, clocks and telemetry.

    edge power status [--json]        mode, modes, clocks, temperatures, GPU load, power per rail
    edge power modes [--json]         the device's modes, cross-checked with the platform profile
    edge power set NAME               switch mode by name (verified, rolled back on failure)
    edge power clocks on|off|restore  jetson_clocks, with the previous state stored and restored

Not a Jetson: one ``error:`` line and exit code 8 (desktops print NVML telemetry first).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = """Jetson power modes (by name), clocks and telemetry.

  edge power status [--json]        mode, modes, clocks, temperatures, GPU load, power per rail
  edge power modes [--json]         the device's modes, cross-checked with the platform profile
  edge power set NAME               switch mode by name (verified, rolled back on failure)
  edge power clocks on|off|restore  jetson_clocks, with the previous state stored and restored

Uses jetson-stats' jtop service when it answers, else nvpmodel / jetson_clocks (root needed).
Not a Jetson: one error line and exit code 8 (desktops print NVML telemetry first). See docs/power.md."""
EXIT_CODES = "exit codes: 0 ok, 2 bad arguments, 7 power control failed, 8 not a Jetson"


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sysroot", default="/", help="root of the device's file tree (default /)")
    common.add_argument(
        "--backend", choices=("auto", "jtop", "cli"), default="auto", help="jtop service or nvpmodel/jetson_clocks"
    )
    parser = subparsers.add_parser(
        "power",
        help="Jetson power modes, clocks and telemetry",
        description=HELP,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="power_command", metavar="ACTION", required=True)
    p = sub.add_parser("status", parents=[common], help="mode, clocks, temperatures, GPU load, power rails")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)
    p = sub.add_parser("modes", parents=[common], help="the device's power modes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_modes)
    p = sub.add_parser("set", parents=[common], help="switch the power mode (by name; an id is accepted)")
    p.add_argument("name", help="mode name as the device lists it, e.g. MAXN, 15W, MAXN_SUPER")
    p.set_defaults(func=_set)
    p = sub.add_parser("clocks", parents=[common], help="pin (on), release (off) or restore the clocks")
    p.add_argument("state", choices=("on", "off", "restore"))
    p.set_defaults(func=_clocks)


def _controller(args: argparse.Namespace) -> Any:
    from edge.power.control import open_controller

    return open_controller(args.sysroot, args.backend)


def _status(args: argparse.Namespace) -> int:
    from edge.errors import PowerError
    from edge.power import device
    from edge.power.report import status_report
    from edge.power.telemetry import NvmlTelemetry

    if device.jetson_info(args.sysroot) is None:
        nvml: dict[str, Any] | None = None
        note = ""
        try:
            reader = NvmlTelemetry()
            try:
                nvml = reader().as_dict()
            finally:
                reader.close()
        except PowerError as exc:
            note = str(exc)
        if args.json:
            print(json.dumps({"jetson": False, "nvml": nvml, "nvml_error": note or None}, indent=2))
        elif nvml is not None:
            for gpu in nvml["gpus"]:
                print(
                    f"GPU {gpu['index']} {gpu['name']}: {_num(gpu['power_w'], 'W')}, "
                    f"{_num(gpu['temperature_c'], 'C')}, utilisation {_num(gpu['utilization_pct'], '%')}"
                )
        else:
            print(f"telemetry: {note}")
        raise device.not_jetson(args.sysroot)  # the one error line and exit 8
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
    ctl = _controller(args)
    before = ctl.current_mode()
    mode = ctl.set_mode(args.name)
    if mode.id == before.id:
        print(f"power mode: already {mode.name} (id {mode.id})")
    else:
        print(f"power mode: {before.name} -> {mode.name} (id {mode.id}), verified")
    return 0


def _clocks(args: argparse.Namespace) -> int:
    ctl = _controller(args)
    if args.state == "restore":
        ctl.restore_clocks()
    else:
        ctl.set_clocks(args.state == "on")
    pinned = ctl.clocks_pinned()
    print(f"clocks: {'unknown' if pinned is None else 'pinned' if pinned else 'not pinned'}")
    return 0


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f}{unit}"
