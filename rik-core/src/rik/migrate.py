"""``rik manage --import``: convert kernelspecs written by remote_ikernel 0.4.6."""

from __future__ import annotations

from .errors import UsageError


def import_remote_ikernel(names: tuple[str, ...], *, dry_run: bool = False) -> None:
    raise UsageError("rik manage --import is not available yet")
