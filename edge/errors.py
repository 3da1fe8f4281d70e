"""The kit's one exception family.

Every error a user can cause is an :class:`EdgeError` whose message says what failed, what was
expected, and what to do. The CLI prints ``error: <message>`` on one line and exits with
``exit_code``; library code never prints or exits.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the kit raises on purpose."""

    exit_code = 1


class ConfigError(EdgeError):
    """A flag, config file or argument is invalid."""

    exit_code = 2


class BuildError(EdgeError):
    """The builder could not turn the model into a bundle."""

    exit_code = 3


class BundleError(EdgeError):
    """A bundle is missing, corrupt, or not runnable on this machine."""

    exit_code = 4


class EngineError(EdgeError):
    """A backend failed to load or run a model."""

    exit_code = 5


class SourceError(EdgeError):
    """A video source or sink could not be opened or failed while running."""

    exit_code = 6


class PowerError(EdgeError):
    """Power-mode, clock or telemetry control failed."""

    exit_code = 7


class NotJetsonError(PowerError):
    """The command needs a Jetson and this machine is not one."""

    exit_code = 8


class ServiceError(EdgeError):
    """Installing or running the systemd service or the HTTP API failed."""

    exit_code = 9


def first_line(text: object, default: str = "") -> str:
    """The first non-blank line of ``str(text)`` (an exception, a tool's output), stripped.

    ``default`` is returned for an empty or blank text; for an exception with an empty message,
    pass ``type(exc).__name__`` so the line still says what happened.
    """
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return default
