"""The built-in ``local`` interface: a kernel from another local environment, through the same hooks as any
scheduler plugin. There is no job: the kernel's bootstrap runs directly on this machine."""

from __future__ import annotations

from .models import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo
from .plugins import hookimpl

INTERFACE = "local"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel on this machine, e.g. from another virtual environment",
            display="Local",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand | None:
    if request.interface != INTERFACE:
        return None
    return LaunchCommand(argv=())


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation | None:
    if request.interface != INTERFACE:
        return None
    return Allocation(node="localhost", state="running")


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...] | None:
    if request.interface != INTERFACE:
        return None
    return ()
