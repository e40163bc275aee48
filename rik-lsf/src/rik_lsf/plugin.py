"""The ``lsf`` interface: ``bsub -Is`` gives an interactive shell on the dispatched host, under a terminal."""

from __future__ import annotations

import math
import re

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery, hookimpl
from rik.helpers import cancel_command, memory_amount, program, sibling_program, walltime_seconds

INTERFACE = "lsf"

_SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <([^>]*)>")
_WAITING = re.compile(r"<<Waiting for dispatch \.\.\.>>")
_STARTING = re.compile(r"<<Starting on ([^>\s]+)>>")
_ERROR = re.compile(
    r"^(<<Terminated while pending>>"
    r"|.*Job not submitted\.?"
    r"|.*bsub: (?:command )?not found"
    r"|.*bsub: No such file or directory)$",
    re.M,
)
_PROMPT = r"<<Starting on [^>]+>>[^\n]*\n[\s\S]*[$#%>]\s*\Z"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel in an LSF interactive job (bsub -Is)",
            options=frozenset({"cpus", "memory", "walltime", "gpus", "queue", "account"}),
            launch_program="bsub",
            display="LSF",
            # LSF's termination reasons (TERM_RUNLIMIT: job killed after reaching LSF run time limit), as its job
            # report says them; what bsub -Is itself prints when LSF ends the job is not known.
            ended_pattern=r"\bTERM_[A-Z]+(?:_[A-Z]+)*\b",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    r = request.resources
    argv = [program(request.launch_cmd, "bsub"), "-Is", "-J", request.job_name]
    if r.cpus:
        argv += ["-n", str(r.cpus)]
    if r.memory:
        amount, unit = memory_amount(r.memory)
        argv += ["-M", f"{amount:g}{unit}B"]
    if r.walltime:
        minutes = math.ceil(walltime_seconds(r.walltime) / 60)
        argv += ["-W", f"{minutes // 60}:{minutes % 60:02d}"]
    if r.gpus:
        argv += ["-gpu", f"num={r.gpus}"]
    if r.queue:
        argv += ["-q", r.queue]
    if r.account:
        argv += ["-P", r.account]
    argv += [*request.extra_args, "/bin/sh"]
    return LaunchCommand(argv=tuple(argv), tty=True, ready_pattern=_PROMPT, job_id_env="LSB_JOBID")


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    job_id = node = state = error = None
    for m in _SUBMITTED.finditer(output):
        job_id, state = m.group(1), "submitted"
    if _WAITING.search(output):
        state = "queued"
    for m in _STARTING.finditer(output):
        node, state = m.group(1), "running"
    failed = _ERROR.search(output)
    if failed and not node:
        error = failed.group(1).strip()
    return Allocation(job_id=job_id, node=node, state=state, error=error)


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return cancel_command(request.launch_cmd, "bkill", allocation.job_id)


@hookimpl
def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
    """The queue (``bqueues NAME``)."""
    r = request.resources
    if not r.queue:
        return []
    bqueues = sibling_program(request.launch_cmd, "bqueues")
    return [
        SchedulerQuery(
            what=f"queue {r.queue}",
            option="queue",
            argv=(bqueues, r.queue),
            missing=r"No such queue",
            listing=(bqueues, "-noheader", "-o", "queue_name"),
        )
    ]
