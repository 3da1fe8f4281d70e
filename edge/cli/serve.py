"""``edge serve PATH|CONFIG.yaml [--http HOST:PORT] [--grpc HOST:PORT] [--token-file FILE | --no-auth] [--tls-cert F --tls-key F]``.

PATH is a model repository (``PATH/NAME/VERSION/`` bundles, Triton's layout) or one bundle; a ``.yaml``
file is a serve config (docs/serve.md) and takes no other flags. Serves KServe v2 over HTTP and gRPC
until SIGTERM or Ctrl-C, then answers every accepted request before exiting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve models over KServe v2 HTTP and gRPC (Triton's protocol)",
        description="Serve a model repository or one bundle over KServe v2 / Open Inference Protocol "
        "(HTTP/REST and gRPC, Triton clients work unchanged), with dynamic batching and hot reload.",
    )
    p.add_argument("path", type=Path, metavar="PATH", help="model repository, bundle, or serve config (.yaml)")
    p.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address, 'off' to disable (default 127.0.0.1:8000)")
    p.add_argument("--grpc", metavar="HOST:PORT", help="gRPC listen address, 'off' to disable (default 127.0.0.1:8001)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token-file", type=Path, metavar="FILE", help="file holding the bearer token")
    auth.add_argument("--no-auth", action="store_true", help="no token (only on loopback listens)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate (HTTPS and gRPC over TLS)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--max-request-mb", type=float, default=None, metavar="MB", help="largest request body (default 64)")
    p.add_argument("--request-timeout", type=float, default=None, metavar="S", help="per request, seconds (default 30)")
    p.add_argument("--max-queue", type=int, default=None, metavar="N", help="queued requests per model (default 1024)")
    p.add_argument(
        "--poll", type=float, default=None, metavar="S", help="repository poll for hot reload (default 2, 0 off)"
    )
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> Any:
    from edge.errors import ConfigError
    from edge.serve.options import DEFAULT_GRPC, DEFAULT_HTTP, Limits, ServeOptions, load_serve_config, parse_listen_opt

    flags = [
        f
        for f in (
            "http",
            "grpc",
            "token_file",
            "tls_cert",
            "tls_key",
            "max_request_mb",
            "request_timeout",
            "max_queue",
            "poll",
        )
        if getattr(args, f) is not None
    ]
    if args.path.suffix in (".yaml", ".yml") and args.path.is_file():
        if flags or args.no_auth:
            raise ConfigError(
                f"{args.path}: a serve config takes no other flags (got --{flags[0].replace('_', '-') if flags else 'no-auth'}); "
                "set them in the file"
            )
        return load_serve_config(args.path)
    for flag, value, low in (
        ("--max-request-mb", args.max_request_mb, 0.001),
        ("--request-timeout", args.request_timeout, 0.001),
        ("--max-queue", args.max_queue, 1),
        ("--poll", args.poll, 0),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{flag}: must be >= {low:g}, got {value:g}")
    if not args.path.exists():
        raise ConfigError(f"{args.path}: no such model repository, bundle or serve config")
    limits = Limits()
    return ServeOptions(
        repository=args.path,
        http=parse_listen_opt(args.http if args.http is not None else DEFAULT_HTTP, "--http"),
        grpc=parse_listen_opt(args.grpc if args.grpc is not None else DEFAULT_GRPC, "--grpc"),
        token_file=args.token_file,
        auth=not args.no_auth,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        limits=Limits(
            max_request_bytes=int(args.max_request_mb * (1 << 20)) if args.max_request_mb else limits.max_request_bytes,
            max_tensor_elements=limits.max_tensor_elements,
            request_timeout_s=args.request_timeout if args.request_timeout else limits.request_timeout_s,
            max_queue=args.max_queue if args.max_queue else limits.max_queue,
        ),
        poll_s=args.poll if args.poll is not None else 2.0,
    )


def run(args: argparse.Namespace) -> int:
    from edge.serve.server import Server, run_server
    from edge.service.notify import ServeNotifier

    options = options_from_args(args)
    notifier = ServeNotifier.from_env()  # sd_notify under systemd (edge service install); a no-op elsewhere

    def ready(server: Server) -> None:
        parts = []
        if server.http_port is not None and options.http is not None:
            parts.append(f"http {options.http[0]}:{server.http_port}")
        if server.grpc_port is not None and options.grpc is not None:
            parts.append(f"grpc {options.grpc[0]}:{server.grpc_port}")
        assert server.repository is not None
        models = ", ".join(f"{r['name']}/{r['version']}" for r in server.repository.index() if r["state"] == "READY")
        print(f"serving {models} on {', '.join(parts)}", file=sys.stderr, flush=True)
        notifier.on_ready(server)

    try:
        return run_server(
            options,
            on_ready=ready,
            on_tick=notifier.on_tick,
            on_stopping=notifier.on_stopping,
            tick_s=notifier.tick_s,
        )
    finally:
        notifier.close()
