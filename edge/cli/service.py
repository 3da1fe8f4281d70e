"""``edge service install|uninstall|status``: run ``edge run CONFIG`` or ``edge serve CONFIG`` as a hardened
systemd service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "service",
        help="install, remove or inspect the systemd service that runs a pipeline or a model server",
        description="Run `edge run CONFIG` (a run config) or `edge serve CONFIG` (a serve config: a top-level "
        "serve: section) under systemd: Type=notify with a watchdog, restart with backoff, journald logs and a "
        "sandbox that keeps GPU and camera access. See docs/service.md.",
    )
    sub = parser.add_subparsers(dest="service_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "install",
        help="validate CONFIG, write edge-NAME.service and enable it",
        description="Validate the run or serve config (schema, bundle or repository, token file; cameras may be "
        "unplugged), write "
        "edge-NAME.service and print its path. Without --unit-dir it goes to /etc/systemd/system and is "
        "enabled and started (daemon-reload, enable --now); with --unit-dir systemctl is left alone.",
    )
    p.add_argument("config", type=Path, help="the run config of `edge run`, or the serve config of `edge serve` (YAML)")
    p.add_argument("--name", required=True, help="service name: the unit is edge-NAME.service")
    p.add_argument("--user", help="run as this user (default: a DynamicUser)")
    p.add_argument("--unit-dir", type=Path, help="write the unit here and do not call systemctl")
    p.add_argument("--dry-run", action="store_true", help="print the unit; write nothing")
    p.set_defaults(func=run_install)

    p = sub.add_parser("uninstall", help="stop, disable and remove edge-NAME.service")
    p.add_argument("name", help="the NAME given to install")
    p.add_argument("--unit-dir", type=Path, help="remove the unit from this directory and do not call systemctl")
    p.set_defaults(func=run_uninstall)

    p = sub.add_parser("status", help="state, restarts and the pipeline's STATUS line of edge-NAME.service")
    p.add_argument("name", help="the NAME given to install")
    p.set_defaults(func=run_status)


def run_install(args: argparse.Namespace) -> int:
    from edge.service.systemd import install

    path, text, warnings = install(args.config, args.name, user=args.user, unit_dir=args.unit_dir, dry_run=args.dry_run)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print(text, end="")
        print(f"(dry run: would write {path})", file=sys.stderr)
        return 0
    print(path)
    if args.unit_dir is None:
        print(f"enabled and started; follow it with: journalctl -u {path.name} -f", file=sys.stderr)
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    from edge.service.systemd import uninstall

    path = uninstall(args.name, unit_dir=args.unit_dir)
    print(f"removed {path}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from edge.service.systemd import status

    props = status(args.name)
    print(f"edge-{args.name}.service: {props.get('ActiveState', '?')} ({props.get('SubState', '?')})")
    for key in ("StatusText", "MainPID", "NRestarts", "Result", "FragmentPath"):
        if props.get(key):
            print(f"  {key}: {props[key]}")
    return 0 if props.get("ActiveState") == "active" else 3
