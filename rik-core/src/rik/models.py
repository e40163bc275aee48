"""The values that cross the plugin boundary.

Every value is a frozen, keyword-only dataclass: plugins receive them and return them, never mutate them.
New information arrives as new fields with defaults, so a plugin written against an older rik keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RESOURCE_OPTIONS",
    "Allocation",
    "LaunchCommand",
    "LaunchRequest",
    "Resources",
    "SchedulerInfo",
    "SchedulerQuery",
]

#: The resource options ``rik manage`` knows. A scheduler declares the subset it understands in
#: :attr:`SchedulerInfo.options`; asking a scheduler for one it does not understand is refused at ``manage`` time.
RESOURCE_OPTIONS: tuple[str, ...] = ("cpus", "pe", "memory", "walltime", "gpus", "queue", "account")


@dataclass(frozen=True, kw_only=True)
class SchedulerInfo:
    """What a plugin says about one scheduler (interface) it provides.

    :param name: the interface name users pass to ``rik manage --interface`` (lower case, ``[a-z0-9_]``).
    :param help: one line for ``rik plugins`` and ``rik manage --help``.
    :param options: the resource options (from :data:`RESOURCE_OPTIONS`) this scheduler maps to its flags.
    :param needs_host: ``True`` when a host is required (plain SSH); schedulers run their job command on the
        submit host, which is the local machine when no ``--host`` is given.
    :param launch_program: the program the launch command runs by default (``srun``, ``qlogin``); used in kernel
        names and by ``rik doctor``; ``--launch-cmd`` replaces it.
    :param display: how display names call it (``SLURM``, ``SGE``); defaults to the upper-cased name.
    :param on_this_machine: the kernel runs on this machine, started without SSH (the built-in ``local``
        interface): nothing is tunnelled, ``--tunnel-hosts`` does not apply, and the kernel command defaults to this
        Python's ipykernel.
    :param ended_pattern: a regular expression (searched case-insensitively in each line) that recognises the line
        by which the scheduler says it ended a running job: a time limit, preemption, an administrator's cancel
        (SLURM's ``*** STEP 9.0 ON node CANCELLED AT ... DUE TO TIME LIMIT ***``). When the job's session ends
        before the kernel did, rik reports that line as the reason; ``None``: the scheduler says nothing rik knows.
    """

    name: str
    help: str = ""
    options: frozenset[str] = frozenset()
    needs_host: bool = False
    launch_program: str | None = None
    display: str | None = None
    on_this_machine: bool = False
    ended_pattern: str | None = None

    @property
    def label(self) -> str:
        return self.display or self.name.upper()


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Resources asked for a job. ``None`` means "the scheduler's default"."""

    cpus: int | None = None
    pe: str | None = None
    memory: str | None = None
    walltime: str | None = None
    gpus: int | None = None
    queue: str | None = None
    account: str | None = None

    def given(self) -> dict[str, Any]:
        """The options that were set, by name."""
        return {name: getattr(self, name) for name in RESOURCE_OPTIONS if getattr(self, name) is not None}


@dataclass(frozen=True, kw_only=True)
class LaunchRequest:
    """What the core asks a scheduler plugin to start.

    :param interface: the interface name the kernel was made with (``slurm``, ``sge_qrsh``…).
    :param resources: the resources asked for.
    :param job_name: the job's name (``--job-name``, default ``rik``).
    :param launch_cmd: replaces the scheduler's program (``qrsh`` for ``qlogin``, or a full path); ``None`` = default.
    :param extra_args: ``--remote-launch-args``, already split into words, passed through unchanged.
    :param command: the command the job must run on the allocated node, as argv. A plugin whose scheduler can run
        a command (``srun … CMD``) appends it; a scheduler that only gives an interactive shell (``qlogin``,
        ``qsub -I``) returns a command with ``tty=True`` and the core starts ``command`` in that shell itself.
        The command reads a script on its standard input; it never contains a secret.
    """

    interface: str
    resources: Resources = field(default_factory=Resources)
    job_name: str = "rik"
    launch_cmd: str | None = None
    extra_args: tuple[str, ...] = ()
    command: tuple[str, ...] = ("/bin/sh", "-s")


@dataclass(frozen=True, kw_only=True)
class LaunchCommand:
    """How to start one interactive job.

    :param argv: the program and its arguments, run on the submit host. Never a shell string; the core quotes it
        once if it has to cross SSH. An empty argv means "no job": ``request.command`` runs directly on the host.
    :param tty: the job needs a terminal and gives an interactive shell (the core waits for it, turns echo off and
        starts ``request.command`` in it). ``False``: the argv already runs ``request.command`` with its standard
        input and output connected to the core.
    :param ready_pattern: a regular expression on the job's output after which the interactive shell accepts input
        (for ``tty`` jobs; ``None``: the core waits for the output to settle after the allocation is known).
    :param node_in_job: the node name is learnt inside the job (from ``hostname``) rather than from the
        scheduler's output.
    :param job_id_env: the environment variable that holds the job id inside the job (``SLURM_JOB_ID``), used when
        the scheduler's output does not give it.
    :param withdraw_input: for ``tty`` jobs, what to type into the interactive client while its job still waits to
        make it give up at once when the kernel is shut down (PBS ``qsub -I``: Ctrl-C, then ``y`` to its question),
        before the cancel command runs; ``None``: the cancel command alone (the client notices in its own time).
    """

    argv: tuple[str, ...]
    tty: bool = False
    ready_pattern: str | None = None
    node_in_job: bool = False
    job_id_env: str | None = None
    withdraw_input: str | None = None


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """What a plugin read from the job's output so far.

    :param job_id: the scheduler's job id, as soon as it is known (the core records it at once so that any later
        failure cancels the job).
    :param node: the node the job runs on, once allocated.
    :param state: a short human state for the log (``queued``, ``running``…).
    :param reason: why it waits, when the scheduler says.
    :param error: the scheduler refused or ended the job: the core stops waiting and reports this line.
    """

    job_id: str | None = None
    node: str | None = None
    state: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SchedulerQuery:
    """A question ``rik doctor`` asks the scheduler on the submit host, as the kernel's user, before any job runs.

    With ``option`` set, it asks whether the value of that resource option exists (``sinfo -p gpu``: does
    partition ``gpu`` exist?); without, whether the scheduler answers at all (``condor_q -totals``).

    :param what: what is asked about, as the report names it: ``partition gpu``, ``the schedd``.
    :param argv: the command (the value already in it; never a shell string). Exit status 0 means yes.
    :param option: the resource option (from :data:`RESOURCE_OPTIONS`) whose value is checked, or ``None``.
    :param missing: for an ``option``: a regular expression (case-insensitive) on the output of a command that
        failed, by which the scheduler says the value does not exist. A failure it does not match (or any failure
        when ``None``) means doctor could not tell, and says so. Without an ``option`` every failure is a problem.
    :param empty_is_missing: exit status 0 with no output is a no as well (``sinfo -h -p NAME`` prints nothing
        for a partition that does not exist).
    :param listing: a command that prints the values that do exist, separated by white space (a trailing ``*``,
        as ``sinfo`` marks the default partition, is removed), so the fix can name them.
    """

    what: str
    argv: tuple[str, ...]
    option: str | None = None
    missing: str | None = None
    empty_is_missing: bool = False
    listing: tuple[str, ...] = ()
