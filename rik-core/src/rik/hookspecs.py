"""The hooks a rik scheduler plugin implements.

A plugin is a module (or object) with functions decorated by :data:`rik.hookimpl`, named after the specs below,
registered under the ``rik`` entry point group::

    [project.entry-points.rik]
    condor = "rik_condor.plugin"

Hooks are called with keyword arguments only, and an implementation may accept fewer arguments than the spec
(new arguments are added that way without breaking plugins). Plugins are pure: they build argv tuples and parse
text; rik-core owns every process, terminal, socket and file.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .models import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo

hookspec = pluggy.HookspecMarker("rik")

# -------------------------------------------------------------------------------------------------------------
# Declaring schedulers
# -------------------------------------------------------------------------------------------------------------


@hookspec
def rik_declare_schedulers() -> Sequence[SchedulerInfo]:
    """Declare the schedulers (interfaces) this plugin provides.

    Called once per plugin host, for ``rik manage --add --interface=NAME`` to validate its options and for
    ``rik plugins`` to list them. Every plugin is called; the results are concatenated.

    :return: the :class:`~rik.SchedulerInfo` of each interface the plugin provides (an empty sequence, or ``None``,
        for none).
    """


# -------------------------------------------------------------------------------------------------------------
# Starting a job
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand | None:
    """Build the command that starts an interactive job for ``request``.

    :param request: what to start: ``request.interface`` names the scheduler, ``request.resources`` what to ask
        for, ``request.command`` what the job must run (for schedulers that run a command).
    :return: the :class:`~rik.LaunchCommand`, or ``None`` when ``request.interface`` is not one of this plugin's
        schedulers, to let other plugins answer. Raise :class:`~rik.UsageError` for a request the scheduler cannot
        honour (its message is shown to the user as it is).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation | None:
    """Read the job id, node and state from the job's output so far.

    Called each time the job prints something while rik waits for the allocation, with all the output since the
    job started (terminal line endings ``\\r\\n`` are normalised to ``\\n``). Must be a pure function of its
    arguments.

    :param request: the request the job was started for.
    :param output: everything the launch command printed so far (standard output and error together).
    :return: an :class:`~rik.Allocation` with what is known so far (``job_id`` as soon as it is printed, ``node``
        once allocated, ``error`` when the scheduler refused the job), or ``None`` when ``request.interface`` is
        not one of this plugin's schedulers.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# Ending a job
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...] | None:
    """Build the command that cancels the job in ``allocation``.

    rik runs it on the submit host on shutdown, after a failed launch and on a queue timeout, even when the job
    is still pending.

    :param request: the request the job was started for.
    :param allocation: what is known of the job (``job_id`` is set).
    :return: the argv (``("scancel", "42")``), an empty tuple when nothing needs cancelling (plain SSH), or
        ``None`` when ``request.interface`` is not one of this plugin's schedulers.

    Stops at first non-None result.
    """
