"""Running as a service: systemd unit generation, sd_notify, and the HTTP API.

``edge run`` calls :func:`attach` with the loaded run config and model; it returns the observers
to register on the pipeline (each has ``close()``):

- :class:`~edge.service.notify.NotifyObserver`, always (a no-op without ``NOTIFY_SOCKET``): READY,
  WATCHDOG driven by frame progress, STATUS, STOPPING;
- :class:`~edge.service.http.HttpObserver` when the run config has an ``http`` section (aiohttp, metrics on
  prometheus-client; both imported only then).

The HTTP API's ``POST /v1/infer`` shares the pipeline's model. A runtime ``Model`` serialises its
backend calls on ``Model.lock`` (a re-entrant lock); :func:`model_lock` returns that lock, so the API
holds it around ``predict`` and the read of ``model.timings`` and never interleaves with the pipeline.
Objects without a ``lock`` attribute get one shared lock per object from :func:`model_lock`.
"""

from __future__ import annotations

import importlib.util
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from edge.errors import ServiceError
from edge.service.config import HttpConfig, ServiceConfig

__all__ = ["HttpConfig", "ServiceConfig", "attach", "model_lock", "require_http_stack"]

# The HTTP API's libraries (install_requires of edge-kit; missing only from a broken or partial install).
HTTP_STACK = (("aiohttp", "aiohttp"), ("prometheus_client", "prometheus-client"))

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.Lock:
    """The one lock that serialises calls into ``model`` (the model's own ``lock`` attribute if it has one)."""
    own = getattr(model, "lock", None)
    if own is not None:
        return own
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def require_http_stack(where: str) -> None:
    """A ServiceError naming the missing packages when the HTTP stack (aiohttp, prometheus-client) is not installed."""
    missing = [package for module, package in HTTP_STACK if importlib.util.find_spec(module) is None]
    if missing:
        raise ServiceError(
            f"{where}: the HTTP API needs {' and '.join(missing)}, which edge-kit depends on but this "
            "environment lacks: pip install 'aiohttp>=3.9' 'prometheus-client>=0.17' (or reinstall edge-kit)"
        )


def attach(run_config: Any, model: Any, *, metrics: Sequence[Callable[[Any], None]] = ()) -> list[Any]:
    """The service observers for one ``edge run``: sd_notify always, the HTTP API when configured.

    ``metrics``: functions ``register_metrics(registry)`` of other modules, each called once with the HTTP
    API's ``prometheus_client.CollectorRegistry`` so their metrics appear on ``/metrics`` (not called
    without an ``http`` section: there is no ``/metrics`` then).
    """
    from edge.service.notify import NotifyObserver

    # The HTTP observer goes first: by the time systemd reads READY=1, /readyz already answers 200.
    observers: list[Any] = [NotifyObserver.from_env()]
    http_config = getattr(run_config, "http", None)
    if http_config is not None:
        require_http_stack("http")
        from edge.service.http import HttpObserver
        from edge.service.metrics import PowerTelemetry

        telemetry = PowerTelemetry.open()
        try:
            observers.insert(
                0,
                HttpObserver(
                    http_config, model, telemetry=telemetry, model_lock=model_lock(model), metrics=tuple(metrics)
                ),
            )
        except BaseException:
            if telemetry is not None:
                telemetry.close()
            for obs in observers:
                obs.close()
            raise
    return observers
