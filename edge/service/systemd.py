"""``edge service install|uninstall|status``: plan a unit from a run or serve config, write it, drive systemctl.

:func:`plan_unit` reads the validated run config (``edge run``) and this machine (GPU and camera device
nodes, the systemd version, where the Python environment lives) into a :class:`~edge.service.unit.UnitSpec`;
:func:`plan_serve_unit` does the same for a serve config (a YAML with a top-level ``serve:``, run by
``edge serve``), with the same hardening. :func:`install` tells the two apart, writes ``edge-NAME.service``
atomically and, for the system unit directory, runs ``systemctl daemon-reload`` and ``enable --now``.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import edge
from edge.errors import ConfigError, ServiceError
from edge.fsutil import atomic_write
from edge.service.config import HttpConfig, ServiceConfig, is_loopback, parse_listen
from edge.service.unit import UnitSpec, render_unit

log = logging.getLogger(__name__)

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_SYSTEMD = 249  # Ubuntu 22.04 / JetPack 6, when the version cannot be read
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_HOMES = ("/home", "/root", "/run/user")
_TMPS = (Path("/tmp"), Path("/var/tmp"))  # what PrivateTmp=yes replaces
# Device nodes of the GPU and the camera pipeline, by glob under /dev (Jetson nvgpu/nvhost/nvmap, desktop nvidia).
DEVICE_GLOBS = (
    "nvidia[0-9]*",
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
    "nvidia-caps/*",
    "nvmap",
    "nvhost-*",
    "nvgpu/*/*",
    "host1x*",
    "nvsciipc",
    "v4l2-nv*",
    "dri/renderD*",
)
POWER_GROUP = "jtop"  # jetson-stats' socket group: mode and clock changes without root


DRAIN_MARGIN_S = 5.0  # TimeoutStopSec= covers serve.drain_timeout plus this for closing down
SERVE_SECTIONS = ("serve", "service")


@dataclass
class Planned:
    spec: UnitSpec
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ServeUnitConfig:
    """A serve config as ``edge service install`` reads it: ``edge serve``'s options and the unit's ``service:``."""

    options: Any  # edge.serve.ServeOptions
    service: ServiceConfig


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"--name {name!r}: use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def systemd_version() -> int:
    """The major version of the systemd here (``systemctl --version``), or DEFAULT_SYSTEMD."""
    for tool in ("systemctl", "systemd-analyze"):
        try:
            out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        m = re.match(r"systemd (\d+)", out)
        if m:
            return int(m.group(1))
    return DEFAULT_SYSTEMD


def device_nodes(dev_root: str | Path = "/dev") -> list[str]:
    """GPU and camera-pipeline device nodes that exist now, as ``/dev/...`` paths."""
    root = Path(dev_root)
    found: dict[str, None] = {}
    for pattern in DEVICE_GLOBS:
        for p in sorted(root.glob(pattern)):
            found["/dev/" + p.relative_to(root).as_posix()] = None
    return list(found)


def _uris(items: Any) -> list[str]:
    out = []
    for item in items or ():
        uri = item if isinstance(item, str) else getattr(item, "uri", None)
        if isinstance(uri, str):
            out.append(uri.strip())
    return out


def _scheme(uri: str) -> str:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    return m.group(1).lower() if m else ""


def _under_home(path: Path) -> bool:
    text = str(path)
    return any(text == h or text.startswith(h + "/") for h in _HOMES)


def _host_tmp(spec: UnitSpec, reads: list[Path], warnings: list[str]) -> None:
    """PrivateTmp=yes gives the service an empty /tmp and /var/tmp: what it reads or writes in the host's are
    bound in (read-only unless written), with a warning (tmpfiles cleaning and reboots remove such files)."""

    def in_tmp(path: Path) -> bool:
        return any(path == t or t in path.parents for t in _TMPS)

    spec.tmp_write_paths = [p for p in spec.write_paths if in_tmp(p)]
    spec.tmp_paths = _minimal(
        p for p in reads if in_tmp(p) and not any(p == w or w in p.parents for w in spec.tmp_write_paths)
    )
    if spec.tmp_paths or spec.tmp_write_paths:
        shown = ", ".join(map(str, _minimal([*spec.tmp_paths, *spec.tmp_write_paths])))
        warnings.append(
            f"{shown}: in the host's /tmp, which the service's private /tmp hides; bound into the unit, but files "
            "there vanish on reboot or tmpfiles cleaning: keep a service's config, bundle and outputs elsewhere"
        )


def _model_path(run_config: Any, base: Path) -> Path | None:
    model = getattr(run_config, "model", None)
    for candidate in (model, getattr(model, "bundle", None), getattr(model, "path", None)):
        if isinstance(candidate, (str, os.PathLike)):
            return _absolute(candidate, base)
    return None


def _absolute(path: str | os.PathLike[str], base: Path) -> Path:
    """Relative paths are taken from the config's directory: the unit's WorkingDirectory=."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def plan_unit(
    run_config: Any,
    config_path: Path,
    name: str,
    *,
    user: str | None = None,
    version: int | None = None,
    dev_root: str | Path = "/dev",
    python: str | None = None,
) -> Planned:
    """Every decision for the unit of ``edge run CONFIG``; warnings are for the person installing."""
    check_name(name)
    config_path = Path(config_path).resolve()
    service: ServiceConfig = getattr(run_config, "service", None) or ServiceConfig()
    http: HttpConfig | None = getattr(run_config, "http", None)
    warnings: list[str] = []
    python = python or sys.executable
    spec = UnitSpec(
        name=name,
        exec_start=[python, "-m", "edge", "run", str(config_path)],
        config_path=config_path,
        service=service,
        user=user or service.user,
        systemd_version=version if version is not None else systemd_version(),
    )
    _token_file(spec, http.token_file if http is not None else None)

    sources = _uris(getattr(run_config, "sources", ()))
    sinks = _uris(getattr(run_config, "sinks", ()))
    spec.csi = any(_scheme(u) == "csi" for u in sources)
    spec.network = _network(sources, sinks, http)

    base = config_path.parent
    reads: list[Path] = [base, Path(python).parent.parent, Path(edge.__file__).resolve().parent.parent]
    model_path = _model_path(run_config, base)
    if model_path is not None:
        reads.append(model_path)
    for uri in sources:
        if _scheme(uri) in ("", "file"):
            reads.append(_absolute(uri.split("://", 1)[-1].split("?", 1)[0], base))
    spec.home_paths = _minimal([p for p in reads if _under_home(p)])

    writes = list(service.read_write_paths)
    for uri in sinks:
        scheme = _scheme(uri)
        target = uri.split("://", 1)[-1].split("?", 1)[0] if scheme else uri
        if scheme in ("", "file", "jsonl") and target not in ("", "-"):
            writes.append(_absolute(target, base).parent)
        if scheme == "display":
            warnings.append(f"sink {uri}: a system service has no display; the sink will fail to open")
    spec.write_paths = _minimal(writes)
    for path in spec.write_paths:
        if not path.is_dir():
            warnings.append(f"{path} does not exist: create it now, the service cannot (its file system is read-only)")
    if spec.user is None and spec.write_paths:
        warnings.append(
            "sinks write files as a throw-away DynamicUser; pass --user USER to own them "
            f"({', '.join(map(str, spec.write_paths))})"
        )
    _host_tmp(spec, reads, warnings)
    spec.device_nodes = device_nodes(dev_root)
    _power(run_config, spec, warnings)
    return Planned(spec, warnings)


def _token_file(spec: UnitSpec, token_file: str | os.PathLike[str] | None) -> None:
    """Hand the HTTP token to the unit (LoadCredential=), refused where systemd cannot do it for a DynamicUser."""
    if token_file is None:
        return
    spec.token_file = Path(token_file).resolve()
    if spec.systemd_version < 247 and spec.user is None:
        raise ServiceError(
            f"systemd {spec.systemd_version} cannot hand the token file to a DynamicUser service "
            f"(LoadCredential= needs 247): pass --user USER, a user that can read {spec.token_file}"
        )


def plan_serve_unit(
    serve: ServeUnitConfig,
    config_path: Path,
    name: str,
    *,
    user: str | None = None,
    version: int | None = None,
    dev_root: str | Path = "/dev",
    python: str | None = None,
) -> Planned:
    """Every decision for the unit of ``edge serve CONFIG``: the pipeline unit's hardening, listeners for network."""
    check_name(name)
    config_path = Path(config_path).resolve()
    opts = serve.options
    service = serve.service
    warnings: list[str] = []
    drain = float(opts.drain_timeout_s)
    if service.stop_timeout_sec < drain + DRAIN_MARGIN_S:
        service = replace(service, stop_timeout_sec=drain + DRAIN_MARGIN_S)
    python = python or sys.executable
    spec = UnitSpec(
        name=name,
        exec_start=[python, "-m", "edge", "serve", str(config_path)],
        config_path=config_path,
        service=service,
        user=user or service.user,
        systemd_version=version if version is not None else systemd_version(),
        kind="serve",
    )
    _token_file(spec, opts.token_file if opts.auth else None)
    hosts = [host for host, _ in opts.listens()]
    spec.network = "loopback" if all(is_loopback(h) for h in hosts) else "full"
    base = config_path.parent
    reads: list[Path] = [base, Path(python).parent.parent, Path(edge.__file__).resolve().parent.parent]
    reads.append(Path(opts.repository).resolve())
    for tls in (opts.tls_cert, opts.tls_key):
        if tls is not None:
            reads.append(Path(tls).resolve())
    spec.home_paths = _minimal([p for p in reads if _under_home(p)])
    spec.write_paths = _minimal(service.read_write_paths)
    for path in spec.write_paths:
        if not path.is_dir():
            warnings.append(f"{path} does not exist: create it now, the service cannot (its file system is read-only)")
    if opts.tls_key is not None and spec.user is None:
        warnings.append(
            f"TLS: a DynamicUser cannot read a private key only root may read ({opts.tls_key}); "
            "pass --user USER, a user that can read it"
        )
    _host_tmp(spec, reads, warnings)
    spec.device_nodes = device_nodes(dev_root)
    return Planned(spec, warnings)


def _network(sources: Sequence[str], sinks: Sequence[str], http: HttpConfig | None) -> str:
    if any(_scheme(u) in ("rtsp", "rtsps", "http", "https", "gst", "udp", "rtmp") for u in sources):
        return "full"
    listens = [(http.host if http is not None else None)]
    for uri in sinks:
        if _scheme(uri) in ("mqtt", "mqtts"):  # a client: loopback when the broker is on this machine
            from edge.sinks.mqtt import parse_mqtt_uri

            try:
                listens.append(parse_mqtt_uri(uri)[1])
            except ConfigError:
                listens.append("0.0.0.0")
        if _scheme(uri) == "mjpeg":
            target = uri.split("://", 1)[1].split("?", 1)[0]
            try:
                listens.append(parse_listen(target, uri)[0])
            except ConfigError:
                listens.append("0.0.0.0")
    hosts = [h for h in listens if h is not None]
    if not hosts:
        return "none"
    return "loopback" if all(is_loopback(h) for h in hosts) else "full"


def _power(run_config: Any, spec: UnitSpec, warnings: list[str]) -> None:
    power = getattr(run_config, "power", None)
    changes = power is not None and any(
        getattr(power, key, None) is not None for key in ("mode", "clocks", "idle_mode", "thermal_limit_c")
    )
    if not changes:
        return
    if spec.user == "root":
        return
    try:
        grp.getgrnam(POWER_GROUP)
    except KeyError:
        spec.power_note = (
            "power: changes power modes/clocks, but there is no jtop group (jetson-stats) here: this unit has\n"
            "no root and no capabilities, so nvpmodel/jetson_clocks will be refused; install jetson-stats"
        )
        warnings.append("power modes are configured but jetson-stats (jtop) is not installed: mode changes will fail")
        return
    spec.extra_groups.append(POWER_GROUP)
    spec.power_note = "jtop: power mode and clock changes go through jetson-stats' socket (/run/jtop.sock), no root"


def _minimal(paths: Iterable[Path]) -> list[Path]:
    """Sorted unique paths without ones already covered by a parent in the list."""
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda q: (len(q.parts), str(q))):
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return sorted(out)


def validate(config_path: Path) -> Any:
    """Load and check the run config as ``edge run`` would; bundle and token are checked, cameras are not."""
    from edge.config import load_run_config

    run_config = load_run_config(config_path)
    model_path = _model_path(run_config, Path(config_path).resolve().parent)
    if model_path is not None:
        from edge.runtime import Bundle

        Bundle.open(model_path)
    http = getattr(run_config, "http", None)
    if http is not None:
        from edge.service import require_http_stack

        require_http_stack(f"{config_path}: http")
        from edge.service.http import read_token

        read_token(http, environ={})
    return run_config


def is_serve_config(data: dict[str, Any]) -> bool:
    """A serve config has a top-level ``serve:`` section (a run config has ``model:`` and ``source:``)."""
    return "serve" in data


def validate_serve(config_path: Path, data: dict[str, Any] | None = None) -> ServeUnitConfig:
    """Load and check a serve config as ``edge serve`` would: options, models found, token file readable."""
    from edge.config import read_config_file
    from edge.serve.options import load_serve_config, read_token
    from edge.serve.repository import scan

    config_path = Path(config_path)
    data = read_config_file(config_path) if data is None else data
    for key in data:
        if key not in SERVE_SECTIONS:
            raise ConfigError(
                f"{config_path}: {key}: unknown top-level key in a serve config (allowed: {', '.join(SERVE_SECTIONS)})"
            )
    options = load_serve_config(config_path)
    try:
        service = ServiceConfig.from_dict(data.get("service") or {}, "service")
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    found = scan(Path(options.repository))
    if not found:
        raise ConfigError(f"{config_path}: serve.repository {options.repository}: no models in it")
    broken = [why for why in found.values() if isinstance(why, str)]
    if broken and len(broken) == len(found):
        raise ConfigError(f"{config_path}: serve.repository: {broken[0]}")
    read_token(options)
    return ServeUnitConfig(options, service)


def write_atomic(path: Path, text: str) -> None:
    try:
        atomic_write(path, text, mode=0o644)
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc.strerror}; run with sudo or pass --unit-dir DIR") from None


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        run = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ServiceError("systemctl not found: this machine does not run systemd; use --unit-dir DIR") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"systemctl {' '.join(args)} did not finish in 120 s") from None
    return run


def _check(run: subprocess.CompletedProcess[str], what: str) -> None:
    if run.returncode != 0:
        detail = (run.stderr or run.stdout).strip().splitlines()
        raise ServiceError(f"{what} failed: {detail[-1] if detail else f'exit {run.returncode}'}")


def install(
    config_path: Path,
    name: str,
    *,
    user: str | None = None,
    unit_dir: Path | None = None,
    dry_run: bool = False,
) -> tuple[Path, str, list[str]]:
    """Validate, render, write (unless ``dry_run``), enable. Returns (unit path, unit text, warnings).

    ``config_path`` is a run config (``edge run``) or a serve config (``edge serve``, a top-level ``serve:``)."""
    from edge.config import read_config_file

    check_name(name)
    config_path = Path(config_path)
    data = read_config_file(config_path)
    if is_serve_config(data):
        planned = plan_serve_unit(validate_serve(config_path, data), config_path, name, user=user)
    else:
        planned = plan_unit(validate(config_path), config_path, name, user=user)
    spec = planned.spec
    if spec.user is not None and spec.user != "root":
        try:
            pwd.getpwnam(spec.user)
        except KeyError:
            message = f"user {spec.user!r} does not exist here; create it (useradd --system {spec.user})"
            if unit_dir is None and not dry_run:
                raise ServiceError(message) from None
            planned.warnings.append(message)
    text = render_unit(spec)
    path = (unit_dir or SYSTEM_UNIT_DIR) / spec.unit_name
    if dry_run:
        return path, text, planned.warnings
    write_atomic(path, text)
    if unit_dir is None:
        _check(systemctl("daemon-reload"), "systemctl daemon-reload")
        _check(systemctl("enable", "--now", spec.unit_name), f"systemctl enable --now {spec.unit_name}")
    return path, text, planned.warnings


def uninstall(name: str, *, unit_dir: Path | None = None) -> Path:
    """Stop and disable (system directory only) and remove the unit file."""
    check_name(name)
    unit = f"edge-{name}.service"
    path = (unit_dir or SYSTEM_UNIT_DIR) / unit
    if not path.is_file():
        raise ServiceError(f"no unit {path}; `edge service install` writes it (see systemctl list-units 'edge-*')")
    if unit_dir is None:
        _check(systemctl("disable", "--now", unit), f"systemctl disable --now {unit}")
    try:
        path.unlink()
    except OSError as exc:
        raise ServiceError(f"cannot remove {path}: {exc.strerror}; run with sudo") from None
    if unit_dir is None:
        _check(systemctl("daemon-reload"), "systemctl daemon-reload")
    return path


STATUS_PROPS = ("LoadState", "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Result", "FragmentPath")


def status(name: str) -> dict[str, str]:
    """The unit's state from ``systemctl show`` (StatusText is the pipeline's STATUS= line)."""
    check_name(name)
    unit = f"edge-{name}.service"
    run = systemctl("show", unit, "--property=" + ",".join(STATUS_PROPS))
    _check(run, f"systemctl show {unit}")
    props = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    if props.get("LoadState") == "not-found":
        raise ServiceError(f"{unit} is not installed; run: edge service install CONFIG --name {name}")
    return props
