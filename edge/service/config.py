"""The ``http`` and ``service`` sections of the run config.

``http`` turns on the HTTP API (:mod:`edge.service.http`)::

    http:
      listen: 0.0.0.0:8080          # HOST:PORT, [::1]:8080 for IPv6; port 0 picks a free one
      token_file: /etc/edge/token   # bearer token, one line; required unless auth: none
      auth: token                   # token (default) | none (only on a loopback listen)
      max_upload_mb: 10             # POST /v1/infer bodies above this get 413
      stream_fps: 10                # GET /v1/stream sends at most this many frames per second
      jpeg_quality: 80              # for /v1/stream

Authentication is required always, except that ``auth: none`` is accepted on a loopback listen
(127.0.0.0/8, ::1, localhost), where only local processes can connect. ``/healthz`` never needs a token.

``service`` shapes the systemd unit written by ``edge service install``::

    service:
      watchdog_sec: 30              # WatchdogSec=; 0 turns the watchdog off
      restart_sec: 2                # first restart delay after a failure
      restart_max_sec: 60           # restart backoff cap (systemd >= 254; older systemd restarts every restart_sec)
      start_timeout_sec: 300        # TimeoutStartSec=: model load, engine deserialisation and warm-up until READY
      stop_timeout_sec: 30          # TimeoutStopSec=: draining after SIGTERM
      user: edge                    # User=; absent: DynamicUser=yes
      supplementary_groups: [video] # device access (GPU, cameras)
      state_dir: edge-front-door    # StateDirectory= name; default edge-NAME
      read_write_paths: [/data/out] # where sinks may write (everything else is read-only)
      environment: {CUDA_MODULE_LOADING: LAZY}
      description: Front door face detector
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.configkit import Reader
from edge.errors import ConfigError, ServiceError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNIT_WORD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]*[$]?$")


def parse_listen(value: str, where: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:8080"`` for IPv6) -> ``(host, port)``."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{where}: expected [IPV6]:PORT such as [::1]:8080, got {value!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{where}: expected HOST:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080, got {value!r}")
        if ":" in host:
            raise ConfigError(f"{where}: write an IPv6 address in brackets, e.g. [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}: port must be a number from 0 to 65535, got {port_text!r} in {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ConfigError(f"{where}: {host!r} is neither an IP address nor a host name") from None
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpConfig:
    """Where the HTTP API listens and how it authenticates. The token itself is never held here."""

    host: str = "127.0.0.1"
    port: int = 8080
    auth: str = "token"  # "token" | "none"
    token_file: Path | None = None
    max_upload_mb: float = 10.0
    stream_fps: float = 10.0
    jpeg_quality: int = 80

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_dict(cls, data: object, path: str = "http", base_dir: Path | None = None) -> HttpConfig:
        """Parse the ``http`` section; a relative ``token_file`` is taken relative to ``base_dir`` when given."""
        r = Reader(data, path)
        host, port = parse_listen(r.str("listen"), r.where("listen"))
        auth = r.str("auth", default="token", choices=("token", "none"))
        token_text = r.str("token_file", default=None)
        max_upload_mb = r.float("max_upload_mb", default=10.0, min=0.001, max=1024)
        stream_fps = r.float("stream_fps", default=10.0, min=0.1, max=120)
        jpeg_quality = r.int("jpeg_quality", default=80, min=10, max=100)
        r.finish()
        token_file: Path | None = None
        if auth == "none":
            if not is_loopback(host):
                raise ConfigError(
                    f"{r.where('auth')}: 'none' is only allowed on a loopback listen (127.0.0.1, [::1], localhost), "
                    f"not {host}; set {r.where('token_file')} instead"
                )
            if token_text is not None:
                raise ConfigError(f"{r.where('token_file')}: given with auth: none; remove one of them")
        else:
            if not token_text:
                raise ConfigError(
                    f"{r.where('token_file')}: required key is missing (a file holding the bearer token, "
                    f"e.g. made with: openssl rand -hex 32 > /etc/edge/token; or auth: none on a loopback listen)"
                )
            token_file = Path(token_text)
            if not token_file.is_absolute() and base_dir is not None:
                token_file = base_dir / token_file
        return cls(host, port, auth, token_file, max_upload_mb, stream_fps, jpeg_quality)


@dataclass(frozen=True)
class ServiceConfig:
    """How ``edge service install`` shapes the systemd unit."""

    watchdog_sec: float = 30.0  # 0: no watchdog
    restart_sec: float = 2.0
    restart_max_sec: float = 60.0
    start_timeout_sec: float = 300.0
    stop_timeout_sec: float = 30.0
    user: str | None = None  # None: DynamicUser=yes
    supplementary_groups: tuple[str, ...] = ("video",)
    state_dir: str | None = None  # None: edge-NAME
    read_write_paths: tuple[Path, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    description: str | None = None

    @classmethod
    def from_dict(cls, data: object, path: str = "service") -> ServiceConfig:
        r = Reader(data, path)
        watchdog_sec = r.duration("watchdog_sec", default=30.0)
        if 0 < watchdog_sec < 2:
            raise ConfigError(f"{r.where('watchdog_sec')}: must be 0 (off) or at least 2s, got {watchdog_sec:g}s")
        restart_sec = r.duration("restart_sec", default=2.0)
        if restart_sec < 0.1:
            raise ConfigError(f"{r.where('restart_sec')}: must be at least 100ms, got {restart_sec:g}s")
        restart_max_sec = r.duration("restart_max_sec", default=max(60.0, restart_sec))
        if restart_max_sec < restart_sec:
            raise ConfigError(
                f"{r.where('restart_max_sec')}: must be >= restart_sec ({restart_sec:g}s), got {restart_max_sec:g}s"
            )
        start_timeout_sec = r.duration("start_timeout_sec", default=300.0)
        stop_timeout_sec = r.duration("stop_timeout_sec", default=30.0)
        for key, value in (("start_timeout_sec", start_timeout_sec), ("stop_timeout_sec", stop_timeout_sec)):
            if value < 1:
                raise ConfigError(f"{r.where(key)}: must be at least 1s, got {value:g}s")
        user = r.str("user", default=None)
        if user is not None and not _USER.match(user):
            raise ConfigError(f"{r.where('user')}: {user!r} is not a valid user name")
        groups = r.list("supplementary_groups", default=["video"])
        for i, g in enumerate(groups):
            if not isinstance(g, str) or not _USER.match(g):
                raise ConfigError(f"{r.where('supplementary_groups')}[{i}]: {g!r} is not a valid group name")
        state_dir = r.str("state_dir", default=None)
        if state_dir is not None and (not _UNIT_WORD.match(state_dir) or ".." in state_dir):
            raise ConfigError(
                f"{r.where('state_dir')}: expected a plain directory name under /var/lib such as edge-cam, "
                f"got {state_dir!r}"
            )
        rw: list[Path] = []
        for i, p in enumerate(r.list("read_write_paths", default=[])):
            if not isinstance(p, str) or not p.startswith("/") or any(c in p for c in "\n\"' "):
                raise ConfigError(
                    f"{r.where('read_write_paths')}[{i}]: expected an absolute path without spaces, got {p!r}"
                )
            rw.append(Path(p))
        env = cls._environment(r.raw("environment", {}), r.where("environment"))
        description = r.str("description", default=None)
        if description is not None and "\n" in description:
            raise ConfigError(f"{r.where('description')}: must be one line")
        r.finish()
        return cls(
            watchdog_sec=watchdog_sec,
            restart_sec=restart_sec,
            restart_max_sec=restart_max_sec,
            start_timeout_sec=start_timeout_sec,
            stop_timeout_sec=stop_timeout_sec,
            user=user,
            supplementary_groups=tuple(groups),
            state_dir=state_dir,
            read_write_paths=tuple(rw),
            environment=env,
            description=description,
        )

    @staticmethod
    def _environment(value: Any, where: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of NAME: value, got {value!r}")
        env: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not _ENV_NAME.match(k):
                raise ConfigError(f"{where}.{k}: not a valid environment variable name")
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise ConfigError(f"{where}.{k}: expected a string or number, got {v!r}")
            text = str(v)
            if any(c in text for c in '\n\\"'):
                raise ConfigError(f"{where}.{k}: newlines, backslashes and double quotes are not allowed in values")
            env[k] = text
        return env


# The systemd credential a unit hands over (LoadCredential=http-token:FILE) and the shortest token accepted;
# shared by the pipeline's HTTP API and `edge serve`.
CREDENTIAL_NAME = "http-token"
MIN_TOKEN_CHARS = 16


def token_path(configured: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the bearer token is: the systemd credential when the unit passed one, else the configured file."""
    cred_dir = (os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).is_file():
        return Path(cred_dir) / CREDENTIAL_NAME
    return configured


def read_token_file(path: Path, label: str) -> bytes:
    """The token in ``path``; a ServiceError starting with ``label`` names the file, never its content."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ServiceError(f"{label}: cannot read the token ({reason}); check the path and its owner") from None
    if len(text) < MIN_TOKEN_CHARS or any(c.isspace() for c in text):
        raise ServiceError(
            f"{label}: the token must be one word of at least {MIN_TOKEN_CHARS} characters; "
            f"make one with: openssl rand -hex 32 > {path}"
        )
    try:
        if path.stat().st_mode & 0o004:
            logging.getLogger(__name__).warning("%s is readable by every user; chmod 600 it", label)
    except OSError:
        pass
    return text.encode()
