"""A host as ssh reaches it (``[user@]host[:port]``): its own module, so that the launcher's first steps (the
session's ssh, started before the rest of rik is loaded) need nothing of the kernel's full configuration."""

from __future__ import annotations

import re

from .errors import UsageError

__all__ = ["Endpoint", "parse_endpoint"]

_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._%+-]+@)?(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$")


class Endpoint:
    """A host as ssh reaches it: ``[user@]host[:port]``. Immutable, compared and hashed by value. (A plain class:
    ``dataclasses`` would cost the launcher's first step ~11 ms of imports.)"""

    __slots__ = ("host", "port")
    host: str
    port: int | None

    def __init__(self, host: str, port: int | None = None) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Endpoint is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __repr__(self) -> str:
        return f"Endpoint(host={self.host!r}, port={self.port!r})"

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def jump(self) -> str:
        """The form ssh's ``-J`` takes."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_endpoint(text: str, what: str = "host") -> Endpoint:
    """Parse ``[user@]host[:port]``; a bad one is a :class:`UsageError` naming ``what``."""
    raw = text.strip()
    host, port = raw, None
    if raw.count(":") == 1 and not raw.startswith("["):
        host, _, port_text = raw.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad {what} {text!r}: the port after ':' must be a number from 1 to 65535")
        port = int(port_text)
    elif raw.startswith("[") and "]:" in raw:
        host, _, port_text = raw.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad {what} {text!r}: the port after ':' must be a number from 1 to 65535")
        port = int(port_text)
    if not host or not _HOST_RE.match(host) or host.startswith("-"):
        raise UsageError(f"bad {what} {text!r}: expected host, user@host or host:port")
    return Endpoint(host, port)
