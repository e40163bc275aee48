"""The ``sge`` (qlogin) and ``sge_qrsh`` (qrsh) interfaces for Grid Engine.

``qlogin`` gives an interactive login shell on the node, under a terminal: rik waits for the shell's prompt
before it types anything (typing while the builtin session is being established kills it about half the time).
``qrsh`` runs rik's bootstrap command directly, its standard input forwarded, with no terminal at all.
"""

from __future__ import annotations

import posixpath
import re

from rik import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery, hookimpl
from rik.helpers import cancel_command, hms, memory_amount, program, sibling_program, walltime_seconds

QLOGIN, QRSH = "sge", "sge_qrsh"
_OPTIONS = frozenset({"cpus", "pe", "memory", "walltime", "queue", "account"})
# No ``ended_pattern``: Grid Engine says nothing when it ends a job at its h_rt limit, qrsh just exits 137
# (tests/data/transcripts/sge-8.1.9-qrsh-h_rt.txt).

_SUBMITTED = re.compile(r'Your (?:interactive )?job (\d+) (?:\("[^"]*"\) )?has been submitted')
_WAITING = re.compile(r"waiting for interactive job to be scheduled")
_SCHEDULED = re.compile(r"Your interactive job (\d+) has been successfully scheduled")
_SESSION = re.compile(r"Establishing \S+ session to host (\S+?)(?: \.\.\.|\s*$)", re.M)
_ERROR = re.compile(
    r'(Your "(?:qlogin|qrsh)" request could not be scheduled, try again later\.'
    r"|^Job was rejected because .+"
    r"|^Unable to run job: .+"
    r"|^error: .+"
    r"|^denied: .+"
    r"|^.*(?:qlogin|qrsh): (?:command )?not found"
    r"|^.*(?:qlogin|qrsh): No such file or directory)$",
    re.M,
)
#: The login shell's prompt, after the session to the node is established.
_PROMPT = r"Establishing \S+ session to host[^\n]*\n[\s\S]*[$#%>]\s*\Z"


@hookimpl
def rik_declare_schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(
            name=QLOGIN,
            help="a kernel in a Grid Engine interactive job (qlogin; --pe with --cpus for slots)",
            options=_OPTIONS,
            launch_program="qlogin",
            display="SGE",
        ),
        SchedulerInfo(
            name=QRSH,
            help="a kernel in a Grid Engine job started with qrsh (no terminal)",
            options=_OPTIONS,
            launch_program="qrsh",
            display="SGE qrsh",
        ),
    ]


def _resources(request: LaunchRequest) -> list[str]:
    r = request.resources
    args: list[str] = []
    if (r.cpus and r.cpus > 1) or r.pe:
        args += ["-pe", r.pe or "smp", str(r.cpus or 1)]
    if r.queue:
        args += ["-q", r.queue]
    if r.walltime:
        args += ["-l", f"h_rt={hms(walltime_seconds(r.walltime))}"]
    if r.memory:
        amount, unit = memory_amount(r.memory)
        args += ["-l", f"h_vmem={amount:g}{unit}"]
    if r.account:
        args += ["-P", r.account]
    return args


@hookimpl
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
    default = "qlogin" if request.interface == QLOGIN else "qrsh"
    prog = program(request.launch_cmd, default)
    argv = [prog, "-verbose", "-now", "n", "-N", request.job_name, *_resources(request), *request.extra_args]
    if request.interface == QRSH:
        return LaunchCommand(argv=(*argv, *request.command), job_id_env="JOB_ID")
    # qlogin (or qrsh without a command, as `--launch-cmd=qrsh` asks): an interactive shell under a terminal.
    return LaunchCommand(argv=tuple(argv), tty=True, ready_pattern=_PROMPT, job_id_env="JOB_ID")


@hookimpl
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
    job_id = node = state = error = None
    for m in _SUBMITTED.finditer(output):
        job_id, state = m.group(1), "submitted"
    if _WAITING.search(output):
        state = "queued"
    for m in _SCHEDULED.finditer(output):
        job_id, state = m.group(1), "scheduled"
    for m in _SESSION.finditer(output):
        node, state = m.group(1), "running"
    failed = _ERROR.search(output)
    if failed and not node:
        error = failed.group(1).strip()
        if "not found" in error or "No such file" in error:
            error = f"{posixpath.basename(program(request.launch_cmd, 'qlogin'))} is not available on the submit host ({error})"
    return Allocation(job_id=job_id, node=node, state=state, error=error)


@hookimpl
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
    return cancel_command(request.launch_cmd, "qdel", allocation.job_id)


@hookimpl
def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
    """The queue (``qconf -sq``) and the parallel environment (``qconf -sp``)."""
    r = request.resources
    qconf = sibling_program(request.launch_cmd, "qconf")
    queries = []
    if r.queue:
        queries.append(
            SchedulerQuery(
                what=f"queue {r.queue}",
                option="queue",
                argv=(qconf, "-sq", r.queue),
                missing=r"No cluster queue|does not exist",
                listing=(qconf, "-sql"),
            )
        )
    if r.pe:
        queries.append(
            SchedulerQuery(
                what=f"parallel environment {r.pe}",
                option="pe",
                argv=(qconf, "-sp", r.pe),
                missing=r"is not a parallel environment",
                listing=(qconf, "-spl"),
            )
        )
    return queries
