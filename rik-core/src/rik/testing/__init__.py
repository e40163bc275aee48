"""The contract suite for scheduler plugins (the ``rik-core[testing]`` extra).

A plugin's tests subclass :class:`SchedulerContract` and say what their recorded transcripts must parse to::

    import rik_condor.plugin
    from rik.testing import Expect, SchedulerContract

    class TestCondor(SchedulerContract):
        plugin = rik_condor.plugin
        interfaces = ("condor",)
        transcripts = {
            "tests/data/condor-submit-interactive.txt": Expect(job_id="42", node="node7"),
            "tests/data/condor-refused.txt": Expect(error="no such pool"),
        }

pytest collects the inherited tests: declared names, argv-only commands, the parser against every transcript (fed
as it arrived, chunk by chunk), cancel commands, the lines by which the scheduler ends a job (:attr:`ended_lines`),
doctor's queries, answers for its own interfaces only, and the entry point installed.

With no cluster at hand, :class:`FakeScheduler` runs the plugin end to end: a scripted fake of the scheduler's
programs prints what the real one prints, then gives a job shell on this machine where rik starts a real kernel::

    from rik.testing import FakeScheduler, Print, Shell, Wait, add_kernel, python_kernel_cmd, running_kernel

    def test_a_kernel_in_a_fake_job(rik_jupyter, fake_scheduler):   # pytest_plugins = ["rik.testing.fixtures"]
        fake = fake_scheduler("condor_submit", [
            Print("1 job(s) submitted to cluster {job_id}.\n"), Wait(0.5),
            Print("Welcome to slot1_1@{hostname}!\n"), Shell(prompt="$ "),
        ], cancel="condor_rm")
        name = add_kernel("-i", "condor", "-k", python_kernel_cmd(), *fake.kernel_args())
        with running_kernel(name) as kernel:
            assert kernel.run("print(6 * 7)") == "42\n"
        assert fake.cancels() == [["1001"]] and fake.wait_until_ended()
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from ..hookspecs import hookimpl
from ..models import (
    RESOURCE_OPTIONS,
    Allocation,
    LaunchCommand,
    LaunchRequest,
    Resources,
    SchedulerInfo,
    SchedulerQuery,
)
from ..plugins import ENTRY_POINT_GROUP, PluginHost
from .fakejob import Exit, FakeJob, FakeScheduler, Print, Shell, Wait
from .kernel import KernelSession, add_kernel, python_kernel_cmd, rik_command, running_kernel

__all__ = [
    "Exit",
    "Expect",
    "FakeJob",
    "FakeScheduler",
    "KernelSession",
    "Print",
    "SchedulerContract",
    "Shell",
    "Wait",
    "add_kernel",
    "python_kernel_cmd",
    "read_transcript",
    "rik_command",
    "running_kernel",
]


@dataclass(frozen=True, kw_only=True)
class Expect:
    """What a transcript must parse to. ``None`` fields are not checked; ``error`` is a substring."""

    job_id: str | None = None
    node: str | None = None
    state: str | None = None
    error: str | None = None
    interface: str | None = None  # defaults to the suite's first interface


def read_transcript(path: str | Path) -> str:
    """A recorded transcript without its ``# key: value`` header lines, line endings normalised as rik does."""
    raw = Path(path).read_bytes().decode("utf-8", "replace")
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and lines[0].startswith("# "):
        lines.pop(0)
    return "\n".join(lines)


class SchedulerContract:
    """Subclass and set :attr:`plugin`, :attr:`interfaces` and :attr:`transcripts` (and :attr:`ended_lines` when
    the scheduler declares an ``ended_pattern``)."""

    plugin: ClassVar[Any]
    interfaces: ClassVar[Sequence[str]]
    transcripts: ClassVar[Mapping[str, Expect]] = {}
    #: Lines by which the scheduler says it ended a running job (time limit, preemption, cancel), as it prints
    #: them: each must match the ``ended_pattern`` of every interface that declares one.
    ended_lines: ClassVar[Sequence[str]] = ()
    #: Resources every interface is asked to honour in the argv tests.
    sample_resources: ClassVar[Resources] = Resources(
        cpus=2, memory="4G", walltime="01:30:00", queue="q1", account="acct", pe="pe1"
    )

    def plugins(self) -> PluginHost:
        """A plugin host with the plugin under test alone (and the built-in ``local``)."""
        return PluginHost(entry_points=False, plugins=[("under-test", self.plugin)], disabled=frozenset())

    def request(self, interface: str, **changes: Any) -> LaunchRequest:
        info = self.plugins().scheduler(interface)
        given = {k: v for k, v in self.sample_resources.given().items() if k in info.options}
        return LaunchRequest(interface=interface, resources=Resources(**given), **changes)

    # -- declaration ------------------------------------------------------------------------------------------
    def test_declares_its_interfaces(self) -> None:
        plugins = self.plugins()
        record = next(r for r in plugins.records if r.name == "under-test")
        assert record.status == "ok", record.error
        declared = {s.name for s in record.schedulers}
        assert set(self.interfaces) <= declared
        for info in record.schedulers:
            assert isinstance(info, SchedulerInfo)
            assert re.fullmatch(r"[a-z][a-z0-9_]*", info.name), info.name
            assert info.help, f"{info.name} has no help text"
            assert set(info.options) <= set(RESOURCE_OPTIONS)

    # -- launch -----------------------------------------------------------------------------------------------
    def test_launch_command_is_an_argv_of_strings(self) -> None:
        plugins = self.plugins()
        for interface in self.interfaces:
            command = plugins.build_launch_command(self.request(interface))
            assert isinstance(command, LaunchCommand)
            assert isinstance(command.argv, tuple) and all(isinstance(w, str) and w for w in command.argv)
            if command.argv and not command.tty:
                tail = tuple(command.argv[-2:])
                assert tail == ("/bin/sh", "-s"), f"{interface}: a job that runs a command must run request.command"

    def test_launch_command_passes_launch_cmd_and_extra_args(self) -> None:
        plugins = self.plugins()
        for interface in self.interfaces:
            request = self.request(interface, launch_cmd="/opt/sched/bin/prog", extra_args=("--site-flag", "x y"))
            argv = plugins.build_launch_command(request).argv
            if not argv:
                continue
            assert argv[0] == "/opt/sched/bin/prog"
            assert "--site-flag" in argv and "x y" in argv

    def test_each_interface_is_answered_by_its_own_plugin_alone(self) -> None:
        """Another plugin that answers every request, whatever its interface, is never asked about this plugin's
        interfaces; and this plugin is never asked about the other's."""
        other = _answers_everything("rik_contract_other")
        plugins = PluginHost(
            entry_points=False, plugins=[("under-test", self.plugin), ("other", other)], disabled=frozenset()
        )
        for interface in self.interfaces:
            request = self.request(interface)
            assert plugins.build_launch_command(request).argv != _OTHER_ARGV, interface
            assert plugins.parse_allocation(request, "").job_id != _OTHER_JOB, interface
            assert plugins.build_cancel_command(request, Allocation(job_id="1")) != _OTHER_ARGV, interface
            assert all(q.argv != _OTHER_ARGV for q in plugins.build_doctor_queries(request)), interface
        foreign = LaunchRequest(interface="rik_contract_other")
        assert plugins.build_launch_command(foreign).argv == _OTHER_ARGV
        assert plugins.parse_allocation(foreign, "").job_id == _OTHER_JOB
        assert plugins.build_cancel_command(foreign, Allocation(job_id="1")) == _OTHER_ARGV

    # -- the job's end ----------------------------------------------------------------------------------------
    def test_ended_pattern_recognises_the_schedulers_own_lines(self) -> None:
        plugins = self.plugins()
        patterns = {i: plugins.scheduler(i).ended_pattern for i in self.interfaces}
        declared = {i: p for i, p in patterns.items() if p}
        if not declared:
            assert not self.ended_lines, "ended_lines given, but no interface declares an ended_pattern"
            return
        assert self.ended_lines, "an ended_pattern needs ended_lines: the scheduler's own lines it must recognise"
        for interface, pattern in declared.items():
            compiled = re.compile(pattern, re.I)
            for line in self.ended_lines:
                assert compiled.search(line), f"{interface}: ended_pattern {pattern!r} misses {line!r}"
            # What a kernel prints, and rik's own markers, are not the scheduler ending the job.
            for line in (
                "RIK-EXIT 0",
                "RIK-READY ipc /tmp/rik-x/k",
                "hello world",
                "Traceback (most recent call last):",
            ):
                assert not compiled.search(line), f"{interface}: ended_pattern {pattern!r} matches {line!r}"

    # -- rik doctor -------------------------------------------------------------------------------------------
    def test_doctor_queries_are_argvs_about_what_the_request_sets(self) -> None:
        plugins = self.plugins()
        for interface in self.interfaces:
            info = plugins.scheduler(interface)
            request = self.request(interface, launch_cmd="/opt/sched/bin/prog")
            queries = plugins.build_doctor_queries(request)
            for query in queries:
                assert isinstance(query, SchedulerQuery)
                assert query.what and query.argv and all(isinstance(w, str) and w for w in query.argv)
                assert query.argv[0].startswith("/opt/sched/bin/"), f"{query.what}: not next to --launch-cmd"
                if query.option is not None:
                    assert query.option in info.options, f"{interface} does not take --{query.option}"
                    value = str(request.resources.given()[query.option])
                    assert value in query.argv, f"{query.what}: the value {value!r} is not in {query.argv}"
            # Nothing set, nothing asked about it.
            bare = LaunchRequest(interface=interface)
            assert all(q.option is None for q in plugins.build_doctor_queries(bare)), interface

    # -- parsing ----------------------------------------------------------------------------------------------
    def test_transcripts_parse_to_what_was_recorded(self) -> None:
        plugins = self.plugins()
        assert self.transcripts, "record at least one transcript of a real job"
        for path, expect in self.transcripts.items():
            text = read_transcript(path)
            request = self.request(expect.interface or self.interfaces[0])
            final = plugins.parse_allocation(request, text)
            where = f"{path}: {final}"
            if expect.job_id is not None:
                assert final.job_id == expect.job_id, where
            if expect.node is not None:
                assert final.node == expect.node, where
            if expect.state is not None:
                assert final.state == expect.state, where
            if expect.error is not None:
                assert final.error and expect.error in final.error, where
            else:
                assert final.error is None, where
            # Fed line by line as it arrives: the job id is known no later than the node, and never changes.
            seen: str | None = None
            for end in range(len(text) + 1):
                if end < len(text) and text[end] != "\n":
                    continue
                partial = plugins.parse_allocation(request, text[:end])
                if partial.node and expect.job_id:
                    assert partial.job_id, f"{path}: node known before the job id"
                if seen and partial.job_id:
                    assert partial.job_id == seen, f"{path}: job id changed"
                seen = partial.job_id or seen

    # -- cancel -----------------------------------------------------------------------------------------------
    def test_cancel_command_names_the_job(self) -> None:
        plugins = self.plugins()
        for interface in self.interfaces:
            request = self.request(interface)
            argv = plugins.build_cancel_command(request, Allocation(job_id="4242"))
            assert isinstance(argv, tuple) and all(isinstance(w, str) for w in argv)
            if argv:
                assert "4242" in argv
                assert plugins.build_cancel_command(request, Allocation()) == ()

    # -- installation -----------------------------------------------------------------------------------------
    def test_entry_point_is_installed(self) -> None:
        from importlib.metadata import entry_points

        modules = {ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)}
        assert self.plugin.__name__ in modules, f"no '{ENTRY_POINT_GROUP}' entry point for {self.plugin.__name__}"


_OTHER_ARGV = ("rik-contract-other-plugin",)
_OTHER_JOB = "rik-contract-other-job"


def _answers_everything(name: str) -> object:
    """A plugin without any check of ``request.interface``: it answers whatever it is asked."""

    @hookimpl
    def rik_declare_schedulers() -> list[SchedulerInfo]:
        return [SchedulerInfo(name=name, help="answers every request")]

    @hookimpl
    def rik_build_launch_command(request: LaunchRequest) -> LaunchCommand:
        return LaunchCommand(argv=_OTHER_ARGV)

    @hookimpl
    def rik_parse_allocation(request: LaunchRequest, output: str) -> Allocation:
        return Allocation(job_id=_OTHER_JOB)

    @hookimpl
    def rik_build_cancel_command(request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
        return _OTHER_ARGV

    @hookimpl
    def rik_build_doctor_queries(request: LaunchRequest) -> list[SchedulerQuery]:
        return [SchedulerQuery(what="everything", argv=_OTHER_ARGV)]

    return SimpleNamespace(
        **{
            f.__name__: f
            for f in (
                rik_declare_schedulers,
                rik_build_launch_command,
                rik_parse_allocation,
                rik_build_cancel_command,
                rik_build_doctor_queries,
            )
        }
    )
