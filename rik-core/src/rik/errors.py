"""Errors rik reports to users as one readable line."""

from __future__ import annotations

__all__ = ["LaunchError", "RikError", "UsageError"]


class RikError(Exception):
    """An error with a message meant for the user: shown as one line, without a traceback."""


class UsageError(RikError):
    """Bad input: a wrong option, an unknown interface, a kernel command that cannot work."""


class LaunchError(RikError):
    """A kernel could not be started (host unreachable, job refused, kernel died)."""
