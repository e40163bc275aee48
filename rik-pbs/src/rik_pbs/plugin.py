"""The ``pbs`` interface: ``qsub -I`` (Torque, OpenPBS, PBS Pro print the same lines).

``qsub -I`` gives an interactive shell under a terminal and never prints the node's name: rik waits for
``qsub: job ID ready`` and the shell's prompt, and learns the node from inside the job.
"""

from __future__ import annotations

import re

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery, hookimpl
from rik.helpers import cancel_command, hms, memory_amount, program, sibling_program, walltime_seconds

INTERFACE = "pbs"

_WAITING = re.compile(r"^qsub: waiting for job (\S+) to start", re.M)
_READY = re.compile(r"^qsub: job (\S+) ready", re.M)
_ERROR = re.compile(
    r"^(qsub: job \S+ apparently deleted"
    r"|Job \S+ is being deleted"
    r"|qsub:[ \t](?!waiting for job|job \S+ ready|job \S+ completed).+"  # OpenPBS indents some with a tab
    r"|.*qsub: (?:command )?not found"
    r"|.*qsub: No such file or directory)$",
    re.M,
)
_PROMPT = r"qsub: job \S+ ready[^\n]*\n[\s\S]*[$#%>]\s*\Z"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel in a PBS interactive job (qsub -I; Torque, OpenPBS, PBS Pro)",
            options=frozenset({"cpus", "memory", "walltime", "gpus", "queue", "account"}),
            launch_program="qsub",
            display="PBS",
            # =>> PBS: job killed: walltime 65 exceeded limit 60
            ended_pattern=r"PBS: job killed|\bwalltime\b.*\bexceeded|killed by",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    r = request.resources
    argv = [program(request.launch_cmd, "qsub"), "-I", "-N", request.job_name[:15]]
    if r.cpus:
        argv += ["-l", f"ncpus={r.cpus}"]
    if r.memory:
        amount, unit = memory_amount(r.memory)
        argv += ["-l", f"mem={amount:g}{unit.lower()}b"]
    if r.walltime:
        argv += ["-l", f"walltime={hms(walltime_seconds(r.walltime))}"]
    if r.gpus:
        argv += ["-l", f"ngpus={r.gpus}"]
    if r.queue:
        argv += ["-q", r.queue]
    if r.account:
        argv += ["-A", r.account]
    argv += list(request.extra_args)
    # A waiting qsub -I checks for a deleted job only every 30 s; Ctrl-C and "y" end it at once
    # ("Do you wish to terminate the job and exit (y|[n])?", tests/data/transcripts/pbs-23.06-qsub-I-ctrl-c-waiting.txt).
    return LaunchCommand(
        argv=tuple(argv),
        tty=True,
        ready_pattern=_PROMPT,
        node_in_job=True,
        job_id_env="PBS_JOBID",
        withdraw_input="\x03y\n",
    )


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    job_id = state = error = None
    for m in _WAITING.finditer(output):
        job_id, state = m.group(1), "queued"
    for m in _READY.finditer(output):
        job_id, state = m.group(1), "running"
    failed = _ERROR.search(output)
    if failed and state != "running":
        error = failed.group(1).strip()
    return Allocation(job_id=job_id, state=state, error=error)


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return cancel_command(request.launch_cmd, "qdel", allocation.job_id)


@hookimpl
def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
    """The queue (``qstat -Q NAME``)."""
    r = request.resources
    if not r.queue:
        return []
    qstat = sibling_program(request.launch_cmd, "qstat")
    return [
        SchedulerQuery(what=f"queue {r.queue}", option="queue", argv=(qstat, "-Q", r.queue), missing=r"Unknown queue")
    ]
