"""The ``ssh`` interface: the kernel runs on the host itself; there is no job to start or cancel."""

from __future__ import annotations

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, hookimpl

INTERFACE = "ssh"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel on a host reached with SSH (through --tunnel-hosts gateways if given)",
            needs_host=True,
            display="SSH",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    return LaunchCommand(argv=())


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    return Allocation(state="running")


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return ()
