"""The ``htcondor`` interface: a kernel in an HTCondor interactive job, ``condor_submit -interactive``.

What ``condor_submit -interactive`` prints (HTCondor's ``submit.cpp``, ``ssh_to_job.cpp`` and the starter's
``condor_ssh_to_job_shell_setup``): ``Submitting job(s).`` and ``1 job(s) submitted to cluster 42.`` on standard
output, then it runs ``condor_ssh_to_job -auto-retry -remove-on-interrupt 42.0``, which says ``Waiting for job to
start...`` on standard error while the job is idle. Once the job runs, the shell in the job says
``Welcome to slot1_1@node7.example.org!`` and gives the user's login shell: the node is the part after ``@``.

There are no queues in HTCondor: jobs ask for resources (``request_cpus``, ``request_memory``, ``request_gpus``)
and are charged to an ``accounting_group``; rik passes each as a submit command with ``-append``.

rik calls each hook here for the ``htcondor`` interface only, so none of them checks ``request.interface``.
"""

from __future__ import annotations

import math
import re

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery, hookimpl
from rik.helpers import cancel_command, memory_amount, program, sibling_program

INTERFACE = "htcondor"

_SUBMITTED = re.compile(r"^\d+ job\(s\) submitted to cluster (\d+)\.", re.M)
_WAITING = re.compile(r"^Waiting for job to start\.\.\.", re.M)
_WELCOME = re.compile(r"^Welcome to (?:[^@\s!]+@)?([^\s!]+)!", re.M)
_ERROR = re.compile(
    r"^(ERROR: .+"  # condor_submit's own refusals ("ERROR: Failed to parse command file", no schedd, ...)
    r"|(?:Job is held|The job is on hold): .+"  # condor_ssh_to_job: the job went on hold instead of starting
    r"|Can't find address of local schedd"
    r"|Unable to fetch job ad; is it still in the queue\?"
    r"|.*condor_submit: (?:command )?not found"
    r"|.*condor_submit: No such file or directory)\s*$",
    re.M,
)
#: The login shell's prompt after the welcome line: the job is ready for rik to type into.
_PROMPT = r"Welcome to [^\n]*\n[\s\S]*[$#%>]\s*\Z"
_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=INTERFACE,
            help="a kernel in an HTCondor interactive job (condor_submit -interactive; --account is the accounting group)",
            options=frozenset({"cpus", "memory", "gpus", "account"}),
            launch_program="condor_submit",
            display="HTCondor",
        )
    ]


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    r = request.resources
    argv = [program(request.launch_cmd, "condor_submit"), "-interactive", "-batch-name", request.job_name]
    submit_commands = []
    if r.cpus:
        submit_commands.append(f"request_cpus = {r.cpus}")
    if r.memory:
        amount, unit = memory_amount(r.memory)
        submit_commands.append(f"request_memory = {math.ceil(amount * _MIB[unit])}")
    if r.gpus:
        submit_commands.append(f"request_gpus = {r.gpus}")
    if r.account:
        submit_commands.append(f"accounting_group = {r.account}")
    for command in submit_commands:
        argv += ["-append", command]
    argv += list(request.extra_args)
    return LaunchCommand(argv=tuple(argv), tty=True, ready_pattern=_PROMPT)


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    job_id = node = state = error = None
    for m in _SUBMITTED.finditer(output):
        job_id, state = m.group(1), "idle"
    if job_id and _WAITING.search(output):
        state = "idle"
    for m in _WELCOME.finditer(output):
        node, state = m.group(1), "running"
    failed = _ERROR.search(output)
    if failed and state != "running":
        error = failed.group(1).strip()
    return Allocation(job_id=job_id, node=node if job_id else None, state=state, error=error)


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return cancel_command(request.launch_cmd, "condor_rm", allocation.job_id)


@hookimpl
def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
    """``rik doctor``: the schedule daemon answers on the submit host (``condor_q`` fails when it cannot reach
    it, as ``condor_submit`` would)."""
    return [SchedulerQuery(what="the schedd", argv=(sibling_program(request.launch_cmd, "condor_q"), "-totals"))]
