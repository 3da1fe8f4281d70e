"""Server-wide options of ``edge serve``: listens, auth, TLS, limits; from flags or a serve YAML.

    serve:
      repository: /opt/models            # a repository (NAME/VERSION/ bundles) or one bundle
      http: 0.0.0.0:8000                 # HOST:PORT, null turns HTTP off
      grpc: 0.0.0.0:8001                 # HOST:PORT, null turns gRPC off
      token_file: /etc/edge/token        # bearer token; or auth: none (loopback listens only)
      tls_cert: /etc/edge/tls.crt        # optional, with tls_key: HTTPS and gRPC over TLS
      tls_key: /etc/edge/tls.key
      max_request_mb: 64                 # bodies / messages above this: 413 / RESOURCE_EXHAUSTED
      max_tensor_elements: 67108864      # one tensor above this: 413 / RESOURCE_EXHAUSTED
      request_timeout: 30s               # queued + running longer: 504 / DEADLINE_EXCEEDED
      max_queue: 1024                    # waiting requests per model beyond this: 429 / RESOURCE_EXHAUSTED
      poll: 2s                           # repository scan for new versions and replaced bundles (0: off)
      drain_timeout: 30s                 # after SIGTERM, how long accepted requests may take to finish

Relative paths are taken from the YAML file's directory. The token is read when the server starts
(``$CREDENTIALS_DIRECTORY/http-token`` wins, as systemd's ``LoadCredential=`` hands it over) and is never
logged or echoed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edge.configkit import Reader
from edge.errors import ConfigError, ServiceError
from edge.service.config import is_loopback, parse_listen, read_token_file, token_path

log = logging.getLogger(__name__)

DEFAULT_HTTP = "127.0.0.1:8000"
DEFAULT_GRPC = "127.0.0.1:8001"


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 64 << 20
    max_tensor_elements: int = 64 << 20
    request_timeout_s: float = 30.0
    max_queue: int = 1024


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``edge serve`` needs but the models themselves (see :mod:`edge.serve.modelconfig`)."""

    repository: Path
    http: tuple[str, int] | None = ("127.0.0.1", 8000)
    grpc: tuple[str, int] | None = ("127.0.0.1", 8001)
    token_file: Path | None = None
    auth: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    limits: Limits = field(default_factory=Limits)
    poll_s: float = 2.0
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.http is None and self.grpc is None:
            raise ConfigError("serve: neither http nor grpc is set; give at least one listen address")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("serve: --tls-cert and --tls-key go together; give both or neither")
        if not self.auth:
            if self.token_file is not None:
                raise ConfigError("serve: a token file and --no-auth (auth: none) were both given; pick one")
            for host, port in self.listens():
                if not is_loopback(host):
                    raise ConfigError(
                        f"serve: --no-auth (auth: none) is only allowed on loopback listens (127.0.0.1, [::1], "
                        f"localhost), not {host}:{port}; give --token-file FILE instead"
                    )
        elif token_path(self.token_file) is None:
            raise ConfigError(
                "serve: a bearer token is required: --token-file FILE (token_file:), a file holding one word "
                "of at least 16 characters, e.g. made with: openssl rand -hex 32 > token; or --no-auth on loopback"
            )

    def listens(self) -> list[tuple[str, int]]:
        return [x for x in (self.http, self.grpc) if x is not None]


def parse_listen_opt(value: str | None, where: str) -> tuple[str, int] | None:
    if value is None or value.strip().lower() in ("", "off", "none"):
        return None
    return parse_listen(value, where)


def read_token(options: ServeOptions) -> bytes | None:
    """The bearer token (None without auth); a ServiceError names the file, never its content."""
    if not options.auth:
        return None
    path = token_path(options.token_file)
    if path is None:
        raise ServiceError("serve: no token file given (--token-file FILE, or --no-auth on loopback)")
    return read_token_file(path, str(path))


def load_serve_config(path: str | os.PathLike[str]) -> ServeOptions:
    """A serve YAML (the ``serve:`` section; other top-level sections are left to their readers)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{at}; fix the file") from None
    if not isinstance(data, dict) or "serve" not in data:
        raise ConfigError(f"{p}: expected a mapping with a 'serve:' section (see docs/serve.md)")
    base = p.resolve().parent
    try:
        return options_from_dict(data["serve"], base, "serve")
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def options_from_dict(data: object, base: Path, where: str = "serve") -> ServeOptions:
    r = Reader(data, where)

    def path_of(key: str) -> Path | None:
        text = r.str(key, None)
        if text is None:
            return None
        q = Path(text).expanduser()
        return q if q.is_absolute() else base / q

    repository = path_of("repository")
    if repository is None:
        raise ConfigError(f"{r.where('repository')}: required key is missing (a model repository or a bundle)")

    def listen_of(key: str, default: str) -> tuple[str, int] | None:
        if r.has(key) and r.data[key] is None:  # http: null turns that protocol off
            r.raw(key, None)
            return None
        return parse_listen_opt(r.str(key, default), r.where(key))

    http = listen_of("http", DEFAULT_HTTP)
    grpc = listen_of("grpc", DEFAULT_GRPC)
    auth = r.str("auth", "token", ("token", "none")) == "token"
    token_file = path_of("token_file")
    tls_cert = path_of("tls_cert")
    tls_key = path_of("tls_key")
    limits = Limits(
        max_request_bytes=int(r.float("max_request_mb", 64.0, min=0.001, max=4096) * (1 << 20)),
        max_tensor_elements=r.int("max_tensor_elements", 64 << 20, min=1),
        request_timeout_s=r.duration("request_timeout", 30.0),
        max_queue=r.int("max_queue", 1024, min=1, max=1_000_000),
    )
    poll = r.duration("poll", 2.0)
    drain = r.duration("drain_timeout", 30.0)
    r.finish()
    return ServeOptions(
        repository=repository,
        http=http,
        grpc=grpc,
        token_file=token_file,
        auth=auth,
        tls_cert=tls_cert,
        tls_key=tls_key,
        limits=limits,
        poll_s=poll,
        drain_timeout_s=drain,
    )
