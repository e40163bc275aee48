"""rik: Jupyter kernels on remote hosts and in batch jobs.

The public API for plugin authors: :data:`hookimpl`, the value types that cross the hook boundary, and the
errors a plugin may raise. Everything else in the package is private.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import LaunchError, RikError, UsageError
from .hookspecs import hookimpl
from .models import (
    RESOURCE_OPTIONS,
    Allocation,
    LaunchCommand,
    LaunchRequest,
    Resources,
    SchedulerInfo,
    SchedulerQuery,
)

__all__ = [
    "RESOURCE_OPTIONS",
    "Allocation",
    "LaunchCommand",
    "LaunchError",
    "LaunchRequest",
    "Resources",
    "RikError",
    "SchedulerInfo",
    "SchedulerQuery",
    "UsageError",
    "__version__",
    "hookimpl",
]
