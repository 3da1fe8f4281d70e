"""Request errors of the data plane and how each protocol spells them.

A :class:`RequestError` carries a ``kind``; the HTTP adapter turns it into a status code and
``{"error": message}`` (Triton's error body), the gRPC adapter into a status code and details.
"""

from __future__ import annotations

from edge.errors import ServiceError

# kind -> (HTTP status, gRPC status code name)
KINDS: dict[str, tuple[int, str]] = {
    "invalid": (400, "INVALID_ARGUMENT"),
    "not_found": (404, "NOT_FOUND"),
    "unavailable": (503, "UNAVAILABLE"),
    "unauthenticated": (401, "UNAUTHENTICATED"),
    "too_large": (413, "RESOURCE_EXHAUSTED"),
    "busy": (429, "RESOURCE_EXHAUSTED"),
    "timeout": (504, "DEADLINE_EXCEEDED"),
    "internal": (500, "INTERNAL"),
}


class RequestError(ServiceError):
    """One request failed; the server goes on. ``kind`` is a key of :data:`KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        if kind not in KINDS:
            raise ValueError(f"unknown request error kind {kind!r}")
        self.kind = kind
        self.message = message

    @property
    def http_status(self) -> int:
        return KINDS[self.kind][0]

    @property
    def grpc_code(self) -> str:
        return KINDS[self.kind][1]
