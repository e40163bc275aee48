"""rik: Jupyter kernels on remote hosts and in batch jobs.

The public API for plugin authors: :data:`hookimpl`, the value types that cross the hook boundary, and the
errors a plugin may raise. Everything else in the package is private.

The names are loaded when first used (PEP 562): the launcher a kernelspec runs starts a kernel's ssh session
before it needs pluggy, so importing the package itself must not import it.
"""

from __future__ import annotations

# Not `from typing import ...`: typing costs the launcher ~10 ms of imports before it starts a kernel.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

if TYPE_CHECKING:
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

_WHERE = {
    "LaunchError": "errors",
    "RikError": "errors",
    "UsageError": "errors",
    "hookimpl": "hookspecs",
    "RESOURCE_OPTIONS": "models",
    "Allocation": "models",
    "LaunchCommand": "models",
    "LaunchRequest": "models",
    "Resources": "models",
    "SchedulerInfo": "models",
    "SchedulerQuery": "models",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rik' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
