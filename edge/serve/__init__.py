"""``edge serve``: models served over KServe v2 (Open Inference Protocol) HTTP/REST and gRPC.

One data plane (:mod:`edge.serve.core`: repository, versions, batching queues, instances, auth, limits)
under thin protocol adapters (:mod:`edge.serve.http` on aiohttp, :mod:`edge.serve.grpc` on grpc.aio).

    from edge.serve import load_serve_config, run_server
    run_server(load_serve_config("serve.yaml"), on_ready=lambda server: notify("READY=1"))

Names resolve lazily so ``import edge.serve`` does not load aiohttp, grpc or the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.serve.options import Limits, ServeOptions, load_serve_config
    from edge.serve.server import Server, run_server

__all__ = ["Limits", "ServeOptions", "Server", "load_serve_config", "run_server"]

_WHERE = {
    "Limits": "edge.serve.options",
    "ServeOptions": "edge.serve.options",
    "load_serve_config": "edge.serve.options",
    "Server": "edge.serve.server",
    "run_server": "edge.serve.server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'edge.serve' has no attribute {name!r}")
