"""The launcher kernel.json runs: ``python -m rik --kernel-config JSON {connection_file}``.

Its parts live in :mod:`rik.launch`; this module keeps the names other code imports."""

from __future__ import annotations

from .launch.entry import main, parse_args
from .launch.launcher import Launcher, cancel_job, kernel_route

__all__ = ["Launcher", "cancel_job", "kernel_route", "main", "parse_args"]
