"""The hooks a rik scheduler plugin implements, and the marker that implements them.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` (``from rik import hookimpl``),
named after the specs below, registered under the ``rik`` entry point group, preferably under the name of its
(first) interface, which lets the launcher load that plugin alone::

    [project.entry-points.rik]
    condor = "rik_condor.plugin"

Hooks are called with keyword arguments only, and an implementation may accept fewer arguments than the spec
(new arguments are added that way without breaking plugins). Plugins are pure: they build argv tuples and parse
text; rik-core owns every process, terminal, socket and file.

Every hook except :func:`rik_declare_schedulers` is about one interface (``request.interface``), and rik calls it
on the plugin that declared that interface only, never on the others: a plugin need not check
``request.interface`` against its own names (a plugin that still does, returning ``None`` for other interfaces,
keeps working). What a hook returns is checked: a value of the wrong type is an error that names the plugin.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .models import Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("rik")
#: Marks a plugin's implementation of a hook (``@hookimpl def rik_build_launch_command(request): ...``).
hookimpl = pluggy.HookimplMarker("rik")

# -------------------------------------------------------------------------------------------------------------
# Declaring schedulers
# -------------------------------------------------------------------------------------------------------------


@hookspec
def rik_declare_schedulers() -> Sequence[SchedulerInfo]:
    """Declare the schedulers (interfaces) this plugin provides.

    Called once per plugin host, for ``rik manage --add --interface=NAME`` to validate its options and for
    ``rik plugins`` to list them. Every plugin is called; the results are concatenated. An interface another
    plugin declared already makes this plugin broken (reported by ``rik plugins``).

    :return: the :class:`~rik.SchedulerInfo` of each interface the plugin provides (an empty sequence, or ``None``,
        for none).
    """


# -------------------------------------------------------------------------------------------------------------
# Starting a job
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand | None:
    """Build the command that starts an interactive job for ``request``.

    Called on the plugin that declared ``request.interface`` only.

    :param request: what to start: ``request.interface`` names the scheduler, ``request.resources`` what to ask
        for, ``request.command`` what the job must run (for schedulers that run a command).
    :return: the :class:`~rik.LaunchCommand` (with an empty argv when there is no job: the kernel's host runs
        ``request.command`` itself). ``None`` is an error naming the plugin. Raise :class:`~rik.UsageError` for a
        request the scheduler cannot honour (its message is shown to the user as it is).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation | None:
    """Read the job id, node and state from the job's output so far.

    Called on the plugin that declared ``request.interface`` only, each time the job prints something while rik
    waits for the allocation, with all the output since the job started (terminal line endings ``\\r\\n`` are
    normalised to ``\\n``). Must be a pure function of its arguments. A plugin that does not implement it has
    nothing to read (``Allocation()``).

    :param request: the request the job was started for.
    :param output: everything the launch command printed so far (standard output and error together).
    :return: an :class:`~rik.Allocation` with what is known so far (``job_id`` as soon as it is printed, ``node``
        once allocated, ``error`` when the scheduler refused the job; ``Allocation()`` while nothing is known).
        ``None`` from an implementation is an error naming the plugin.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# Ending a job
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...] | None:
    """Build the command that cancels the job in ``allocation``.

    Called on the plugin that declared ``request.interface`` only. rik runs the command on the submit host on
    shutdown, after a failed launch and on a queue timeout, even when the job is still pending. A plugin that does
    not implement it has nothing to cancel.

    :param request: the request the job was started for.
    :param allocation: what is known of the job (``job_id`` is set).
    :return: the argv (``("scancel", "42")``), or an empty tuple when nothing needs cancelling (plain SSH).
        ``None`` from an implementation is an error naming the plugin.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# Checking a kernel's setup (rik doctor)
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rik_build_doctor_queries(request: LaunchRequest) -> Sequence[SchedulerQuery] | None:
    """Say how ``rik doctor`` asks the scheduler whether ``request`` can run, before any job is submitted.

    Called on the plugin that declared ``request.interface`` only. ``rik doctor`` runs each query on the submit
    host as the kernel's user and reports one line for it: the partition, queue, parallel environment or account
    exists (or which ones do), the scheduler answers. Ask only about what ``request`` sets (``request.resources``)
    or what every job needs; the queries must not change anything on the cluster.

    :param request: the kernel's request, as its launcher would make it (``request.launch_cmd`` tells where the
        scheduler's programs are: :func:`rik.helpers.sibling_program`).
    :return: the :class:`~rik.SchedulerQuery` values to run, in order; an empty sequence, or ``None`` (as when the
        hook is not implemented), when doctor cannot ask this scheduler anything. For a resource option the
        request sets and no query checks, doctor says it could not check it.

    Stops at first non-None result.
    """
