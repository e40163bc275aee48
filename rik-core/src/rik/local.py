"""The built-in ``local`` interface: a kernel from another local environment, through the same hooks as any
scheduler plugin. There is no job: the kernel's bootstrap runs directly on this machine."""

from __future__ import annotations

from .hookspecs import hookimpl
from .models import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo

INTERFACE = "local"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel on this machine, e.g. from another virtual environment",
            display="Local",
            on_this_machine=True,
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    return LaunchCommand(argv=())


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    return Allocation(node="localhost", state="running")


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return ()
