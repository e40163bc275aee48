"""The ``slurm`` interface: the kernel runs as the task of ``srun`` on the allocated node.

``srun`` runs rik's bootstrap command itself (no terminal: its standard input is forwarded to the task), so there
is no prompt to wait for and no echo to turn off. ``-v`` makes srun print the job id and node as it goes.
"""

from __future__ import annotations

import re

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery, UsageError, hookimpl
from rik.helpers import cancel_command, hms, memory_amount, program, sibling_program, walltime_seconds

INTERFACE = "slurm"

_QUEUED = re.compile(r"srun: job (\d+) queued and waiting for resources")
_ALLOCATED = re.compile(r"srun: job (\d+) has been allocated resources")
_NODES = re.compile(r"srun: jobid (\d+): nodes\(\d+\):`([^'`,\[]+)")
_TASK = re.compile(r"_task_start: Node ([^,\s]+), \d+ tasks? started")
_LAUNCH = re.compile(r"srun: launching StepId=(\d+)\.\S+ on host ([^,\s]+),")
_ERROR = re.compile(
    r"^(?:srun: error: (Unable to allocate resources: .+|.*[Ii]nvalid.+|Required node not available.+)"
    r"|srun: fatal: (.+)"
    r"|srun: (Job has been cancelled)"
    r"|srun: error: (.*(?:cancelled|CANCELLED).*)"
    r"|(?:.*: )?(srun: (?:command )?not found|.*srun: No such file or directory))$",
    re.M,
)


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel in a SLURM job started with srun (--queue is the partition)",
            options=frozenset({"cpus", "memory", "walltime", "gpus", "queue", "account"}),
            launch_program="srun",
            display="SLURM",
            # slurmstepd: error: *** STEP 9.0 ON rik-c1 CANCELLED AT 2026-11-22T00:39:50 DUE TO TIME LIMIT ***
            ended_pattern=r"\*\*\* (?:STEP|JOB) \S+ ON \S+ CANCELLED AT|DUE TO (?:TIME LIMIT|PREEMPTION)",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    r = request.resources
    argv = [program(request.launch_cmd, "srun"), "--job-name", request.job_name, "--nodes=1", "--ntasks=1"]
    if r.cpus:
        argv += ["--cpus-per-task", str(r.cpus)]
    if r.memory:
        amount, unit = memory_amount(r.memory)
        argv += ["--mem", f"{amount:g}{unit}"]
    if r.walltime:
        argv += ["--time", hms(walltime_seconds(r.walltime))]
    if r.gpus:
        argv += ["--gres", f"gpu:{r.gpus}"]
    if r.queue:
        argv += ["--partition", r.queue]
    if r.account:
        argv += ["--account", r.account]
    if r.pe:
        raise UsageError("--pe is a Grid Engine option; SLURM takes --cpus")
    argv += [*request.extra_args, "--verbose", "--unbuffered", *request.command]
    return LaunchCommand(argv=tuple(argv), job_id_env="SLURM_JOB_ID")


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    job_id = node = state = error = None
    for m in _QUEUED.finditer(output):
        job_id, state = m.group(1), "queued"
    for m in _ALLOCATED.finditer(output):
        job_id, state = m.group(1), "allocated"
    for pattern in (_NODES, _LAUNCH):
        for m in pattern.finditer(output):
            job_id, node, state = job_id or m.group(1), m.group(2), "running"
    for m in _TASK.finditer(output):
        node, state = m.group(1), "running"
    failed = _ERROR.search(output)
    if failed and not node:
        error = next(g for g in failed.groups() if g)
        if "not found" in error or "No such file" in error:
            error = f"srun is not available on the submit host ({error.strip()})"
    return Allocation(job_id=job_id, node=node, state=state, error=error)


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return cancel_command(request.launch_cmd, "scancel", allocation.job_id)


@hookimpl
def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
    """The partition (``sinfo -p`` prints nothing for one that does not exist) and the account."""
    r = request.resources
    queries = []
    if r.queue:
        queries.append(
            SchedulerQuery(
                what=f"partition {r.queue}",
                option="queue",
                argv=(sibling_program(request.launch_cmd, "sinfo"), "-h", "-o", "%P", "-p", r.queue),
                empty_is_missing=True,
                listing=(sibling_program(request.launch_cmd, "sinfo"), "-h", "-o", "%P"),
            )
        )
    if r.account:
        sacctmgr = sibling_program(request.launch_cmd, "sacctmgr")
        queries.append(
            SchedulerQuery(
                what=f"account {r.account}",
                option="account",
                argv=(sacctmgr, "-n", "-P", "show", "account", r.account, "format=account"),
                empty_is_missing=True,
            )
        )
    return queries
