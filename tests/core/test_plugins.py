"""The plugin host: built-in behaviour through the same hooks, and broken plugins kept at arm's length."""

from __future__ import annotations

import types

import pytest
from rik import Allocation, LaunchCommand, LaunchRequest, RikError, SchedulerInfo, SchedulerQuery, UsageError, hookimpl
from rik.plugins import PluginHost


def make_plugin(name: str = "condor", **overrides: object) -> types.SimpleNamespace:
    @hookimpl
    def rik_declare_schedulers():
        return [SchedulerInfo(name=name, help="test scheduler", options=frozenset({"cpus"}))]

    @hookimpl
    def rik_build_launch_command(request):
        if request.interface != name:
            return None
        return LaunchCommand(argv=("submit", "-i", *request.command))

    @hookimpl
    def rik_parse_allocation(request, output):
        if request.interface != name:
            return None
        return Allocation(job_id="7", node="n1") if "started" in output else Allocation(state="queued")

    @hookimpl
    def rik_build_cancel_command(request, allocation):
        return None if request.interface != name else ("cancel", allocation.job_id)

    ns = dict(
        rik_declare_schedulers=rik_declare_schedulers,
        rik_build_launch_command=rik_build_launch_command,
        rik_parse_allocation=rik_parse_allocation,
        rik_build_cancel_command=rik_build_cancel_command,
    )
    ns.update(overrides)
    return types.SimpleNamespace(**ns)


def plugins_with(*plugins: tuple[str, object], disabled: frozenset[str] = frozenset()) -> PluginHost:
    return PluginHost(entry_points=False, plugins=plugins, disabled=disabled)


def test_local_is_built_in_and_goes_through_the_hooks() -> None:
    h = plugins_with()
    assert list(h.schedulers()) == ["local"]
    request = LaunchRequest(interface="local")
    assert h.build_launch_command(request).argv == ()
    assert h.build_cancel_command(request, Allocation()) == ()


def test_a_plugin_is_called_only_for_its_own_interface() -> None:
    h = plugins_with(("condor", make_plugin()))
    request = LaunchRequest(interface="condor")
    assert h.build_launch_command(request).argv == ("submit", "-i", "/bin/sh", "-s")
    assert h.parse_allocation(request, "job started") == Allocation(job_id="7", node="n1")
    assert h.build_cancel_command(request, Allocation(job_id="7")) == ("cancel", "7")
    assert h.build_launch_command(LaunchRequest(interface="local")).argv == ()


def test_a_misspelled_hook_marks_the_plugin_broken_by_name_and_others_work() -> None:
    @hookimpl
    def rik_build_lanch_command(request):  # typo
        return None

    h = plugins_with(
        ("typo", make_plugin("typo", rik_build_lanch_command=rik_build_lanch_command)), ("condor", make_plugin())
    )
    record = next(r for r in h.records if r.name == "typo")
    assert record.status == "broken" and "rik_build_lanch_command" in (record.error or "")
    assert "condor" in h.schedulers() and "typo" not in h.schedulers()


def test_a_plugin_whose_declaration_raises_is_broken_not_fatal() -> None:
    @hookimpl
    def rik_declare_schedulers():
        raise RuntimeError("boom")

    h = plugins_with(("bad", make_plugin("bad", rik_declare_schedulers=rik_declare_schedulers)))
    record = next(r for r in h.records if r.name == "bad")
    assert record.status == "broken" and "boom" in (record.error or "")
    with pytest.raises(UsageError, match=r"plugin 'bad', which is broken: .*boom"):
        h.scheduler("bad")


def test_a_plugin_that_raises_while_building_is_reported_by_name() -> None:
    @hookimpl
    def rik_build_launch_command(request):
        raise KeyError("oops")

    h = plugins_with(("flaky", make_plugin("flaky", rik_build_launch_command=rik_build_launch_command)))
    with pytest.raises(RikError, match="plugin 'flaky' failed in rik_build_launch_command"):
        h.build_launch_command(LaunchRequest(interface="flaky"))


def test_plugins_can_be_disabled_by_name() -> None:
    h = plugins_with(("condor", make_plugin()), disabled=frozenset({"condor"}))
    assert next(r for r in h.records if r.name == "condor").status == "disabled"
    assert "condor" not in h.schedulers()


def test_two_plugins_cannot_claim_one_interface() -> None:
    h = plugins_with(("a", make_plugin("same")), ("b", make_plugin("same")))
    assert next(r for r in h.records if r.name == "b").status == "broken"
    assert h.plugin_of("same") == "a"


def test_a_plugin_that_fails_to_import_is_listed_as_broken(monkeypatch) -> None:
    class EP:
        name, value, dist = "ghost", "rik_ghost.plugin", None

        def load(self):
            raise ImportError("No module named 'rik_ghost'")

    monkeypatch.setattr("rik.plugins._entry_points", lambda: [EP()])
    h = PluginHost(disabled=frozenset())
    record = next(r for r in h.records if r.name == "ghost")
    assert record.status == "broken" and "No module named 'rik_ghost'" in (record.error or "")
    assert "local" in h.schedulers()


def test_unknown_first_party_interface_says_which_distribution_to_install() -> None:
    with pytest.raises(UsageError, match="pip install rik-lsf"):
        plugins_with().scheduler("lsf")


def test_tracing_writes_hook_calls_to_stderr(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RIK_TRACE_PLUGINS", "1")
    h = plugins_with(("condor", make_plugin()))
    h.build_launch_command(LaunchRequest(interface="condor"))
    assert "rik_build_launch_command" in capsys.readouterr().err


# ------------------------------------------------------------------ each interface answered by its own plugin
def guardless(name: str, **overrides: object) -> types.SimpleNamespace:
    """A plugin that answers every request without looking at ``request.interface``."""

    @hookimpl
    def rik_declare_schedulers():
        return [SchedulerInfo(name=name, help="answers everything")]

    @hookimpl
    def rik_build_launch_command(request):
        return LaunchCommand(argv=(f"{name}-submit",))

    @hookimpl
    def rik_parse_allocation(request, output):
        return Allocation(job_id=f"{name}-job")

    @hookimpl
    def rik_build_cancel_command(request, allocation):
        return (f"{name}-cancel",)

    ns = dict(
        rik_declare_schedulers=rik_declare_schedulers,
        rik_build_launch_command=rik_build_launch_command,
        rik_parse_allocation=rik_parse_allocation,
        rik_build_cancel_command=rik_build_cancel_command,
    )
    ns.update(overrides)
    return types.SimpleNamespace(**ns)


def test_a_plugin_without_guards_never_answers_for_another_interface() -> None:
    h = plugins_with(("greedy", guardless("greedy")), ("condor", make_plugin()))
    local = LaunchRequest(interface="local")
    assert h.build_launch_command(local).argv == ()
    assert h.parse_allocation(local, "") == Allocation(node="localhost", state="running")
    assert h.build_cancel_command(local, Allocation(job_id="1")) == ()
    condor = LaunchRequest(interface="condor")
    assert h.build_launch_command(condor).argv == ("submit", "-i", "/bin/sh", "-s")
    assert h.parse_allocation(condor, "started") == Allocation(job_id="7", node="n1")
    greedy = LaunchRequest(interface="greedy")
    assert h.build_launch_command(greedy).argv == ("greedy-submit",)
    assert h.parse_allocation(greedy, "") == Allocation(job_id="greedy-job")
    assert h.build_cancel_command(greedy, Allocation(job_id="1")) == ("greedy-cancel",)


def test_a_third_party_plugin_that_keeps_its_guards_keeps_working_next_to_one_without() -> None:
    h = plugins_with(("condor", make_plugin()), ("greedy", guardless("greedy")), ("pbspro", make_plugin("pbspro")))
    for name in ("condor", "pbspro"):
        request = LaunchRequest(interface=name)
        assert h.build_launch_command(request).argv == ("submit", "-i", "/bin/sh", "-s")
        assert h.parse_allocation(request, "queued") == Allocation(state="queued")
        assert h.build_cancel_command(request, Allocation(job_id="9")) == ("cancel", "9")


@pytest.mark.parametrize(
    ("hook", "value", "message"),
    [
        (
            "rik_parse_allocation",
            {"job_id": "7"},
            r"plugin 'odd' returned dict from rik_parse_allocation, not an Allocation",
        ),
        ("rik_parse_allocation", None, r"plugin 'odd' returned None from rik_parse_allocation"),
        ("rik_parse_allocation", Allocation(job_id=7), r"plugin 'odd' returned int .*Allocation.job_id"),  # type: ignore[arg-type]
        ("rik_build_launch_command", ("srun",), r"plugin 'odd' returned tuple from rik_build_launch_command"),
        ("rik_build_launch_command", LaunchCommand(argv="srun -v"), r"plugin 'odd' returned str .*tuple of strings"),  # type: ignore[arg-type]
        (
            "rik_build_launch_command",
            LaunchCommand(argv=("srun", 3)),
            r"plugin 'odd' returned a launch argv with a int",
        ),  # type: ignore[arg-type]
        ("rik_build_launch_command", LaunchCommand(argv=("x",), ready_pattern="(["), r"plugin 'odd'.*ready_pattern"),
        ("rik_build_cancel_command", "scancel 7", r"plugin 'odd' returned str from rik_build_cancel_command"),
        ("rik_build_cancel_command", None, r"plugin 'odd' returned None from rik_build_cancel_command"),
    ],
)
def test_a_wrong_answer_is_an_error_that_names_the_plugin(hook: str, value: object, message: str) -> None:
    h = plugins_with(
        (
            "odd",
            make_plugin("odd", **{hook: hookimpl(specname=hook)(lambda request, output=None, allocation=None: value)}),
        )
    )
    request = LaunchRequest(interface="odd")
    with pytest.raises(RikError, match=message):
        if hook == "rik_parse_allocation":
            h.parse_allocation(request, "")
        elif hook == "rik_build_launch_command":
            h.build_launch_command(request)
        else:
            h.build_cancel_command(request, Allocation(job_id="7"))


def test_a_list_argv_is_taken_as_a_tuple() -> None:
    @hookimpl
    def rik_build_cancel_command(request, allocation):
        return ["cancel", allocation.job_id]

    h = plugins_with(("lists", make_plugin("lists", rik_build_cancel_command=rik_build_cancel_command)))
    assert h.build_cancel_command(LaunchRequest(interface="lists"), Allocation(job_id="3")) == ("cancel", "3")


def test_hooks_a_plugin_leaves_out_have_their_defaults_but_a_launch_command_is_required() -> None:
    @hookimpl
    def rik_declare_schedulers():
        return [SchedulerInfo(name="bare", help="declares only")]

    h = plugins_with(("bare", types.SimpleNamespace(rik_declare_schedulers=rik_declare_schedulers)))
    request = LaunchRequest(interface="bare")
    assert h.parse_allocation(request, "anything") == Allocation()
    assert h.build_cancel_command(request, Allocation(job_id="1")) == ()
    assert h.build_doctor_queries(request) == ()
    with pytest.raises(
        RikError, match="plugin 'bare' provides interface 'bare' but does not implement rik_build_launch_command"
    ):
        h.build_launch_command(request)


def test_doctor_queries_are_checked() -> None:
    @hookimpl
    def rik_build_doctor_queries(request):
        return [SchedulerQuery(what="queue q", option="queue", argv=["qstat", "-Q", "q"], missing=r"Unknown queue")]

    h = plugins_with(("q", make_plugin("q", rik_build_doctor_queries=rik_build_doctor_queries)))
    (query,) = h.build_doctor_queries(LaunchRequest(interface="q"))
    assert query.argv == ("qstat", "-Q", "q")

    @hookimpl
    def rik_build_doctor_queries_bad(request):
        return [SchedulerQuery(what="queue q", option="partition", argv=("sinfo",))]

    bad = plugins_with(
        (
            "b",
            make_plugin(
                "b",
                rik_build_doctor_queries=hookimpl(specname="rik_build_doctor_queries")(rik_build_doctor_queries_bad),
            ),
        )
    )
    with pytest.raises(RikError, match="plugin 'b' returned a query about unknown option 'partition'"):
        bad.build_doctor_queries(LaunchRequest(interface="b"))


def test_a_bad_ended_pattern_or_interface_name_marks_the_plugin_broken() -> None:
    @hookimpl
    def rik_declare_schedulers():
        return [SchedulerInfo(name="ends", help="x", ended_pattern="(unclosed")]

    @hookimpl
    def rik_declare_schedulers_caps():
        return [SchedulerInfo(name="Caps", help="x")]

    h = plugins_with(
        ("ends", make_plugin("ends", rik_declare_schedulers=rik_declare_schedulers)),
        (
            "caps",
            make_plugin(
                "caps", rik_declare_schedulers=hookimpl(specname="rik_declare_schedulers")(rik_declare_schedulers_caps)
            ),
        ),
    )
    records = {r.name: r for r in h.records}
    assert records["ends"].status == "broken" and "ended_pattern of ends" in (records["ends"].error or "")
    assert records["caps"].status == "broken" and "'Caps'" in (records["caps"].error or "")


# ------------------------------------------------------------------ one interface's plugin, found fast
class FakeEntryPoint:
    def __init__(self, name: str, plugin: object, dist: str | None = None) -> None:
        self.name, self.value, self.plugin = name, f"fake_{name}.plugin", plugin
        self.dist = types.SimpleNamespace(name=dist, version="9.9") if dist else None
        self.loads = 0

    def load(self) -> object:
        self.loads += 1
        return self.plugin


def two_interfaces(first: str, second: str) -> types.SimpleNamespace:
    @hookimpl
    def rik_declare_schedulers():
        return [SchedulerInfo(name=first, help="one"), SchedulerInfo(name=second, help="two")]

    return make_plugin(first, rik_declare_schedulers=rik_declare_schedulers)


def installed(monkeypatch, *eps: FakeEntryPoint) -> list[FakeEntryPoint]:
    """``eps`` as the installed entry points, for the fast path and for full discovery alike."""

    def named(names, distribution):
        return [ep for ep in eps if ep.name in names or (distribution and ep.dist and ep.dist.name == distribution)]

    monkeypatch.setattr("rik.plugins._entry_points_named", named)
    monkeypatch.setattr("rik.plugins._entry_points", lambda: list(eps))
    return list(eps)


def test_for_interface_loads_only_the_entry_point_named_for_it(monkeypatch) -> None:
    eps = installed(
        monkeypatch, FakeEntryPoint("condor", make_plugin("condor")), FakeEntryPoint("zz", make_plugin("zz"))
    )
    h = PluginHost.for_interface("condor")
    assert [ep.loads for ep in eps] == [1, 0]
    assert list(h.schedulers()) == ["condor"]  # not even the built-in local
    assert h.build_launch_command(LaunchRequest(interface="condor")).argv[0] == "submit"


def test_for_interface_finds_a_first_party_interface_by_its_distribution(monkeypatch) -> None:
    eps = installed(
        monkeypatch,
        FakeEntryPoint("sge", two_interfaces("sge", "sge_qrsh"), dist="rik-sge"),
        FakeEntryPoint("x", make_plugin("x")),
    )
    h = PluginHost.for_interface("sge_qrsh")
    assert [ep.loads for ep in eps] == [1, 0]
    assert h.plugin_of("sge_qrsh") == "sge"


def test_for_interface_falls_back_to_every_plugin(monkeypatch) -> None:
    eps = installed(
        monkeypatch,
        FakeEntryPoint("acme", two_interfaces("acme", "acme_batch")),
        FakeEntryPoint("zz", make_plugin("zz")),
    )
    h = PluginHost.for_interface("acme_batch")
    assert [ep.loads for ep in eps] == [1, 1]
    assert h.plugin_of("acme_batch") == "acme"
    with pytest.raises(UsageError, match="unknown interface 'nosuch'"):
        PluginHost.for_interface("nosuch").scheduler("nosuch")


def test_for_interface_local_loads_no_entry_point(monkeypatch) -> None:
    def fail(*args):
        raise AssertionError("entry points looked up for the built-in interface")

    monkeypatch.setattr("rik.plugins._entry_points", fail)
    monkeypatch.setattr("rik.plugins._entry_points_named", fail)
    h = PluginHost.for_interface("local")
    assert h.scheduler("local").on_this_machine
    assert h.build_launch_command(LaunchRequest(interface="local")).argv == ()


def test_for_interface_reports_a_broken_plugin_by_name(monkeypatch) -> None:
    class Broken(FakeEntryPoint):
        def load(self) -> object:
            raise ImportError("No module named 'fake_condor'")

    installed(monkeypatch, Broken("condor", None), FakeEntryPoint("zz", make_plugin("zz")))
    with pytest.raises(UsageError, match="plugin 'condor', which is broken: import failed"):
        PluginHost.for_interface("condor").scheduler("condor")


def test_for_interface_keeps_a_disabled_plugin_out(monkeypatch) -> None:
    eps = installed(
        monkeypatch, FakeEntryPoint("condor", make_plugin("condor")), FakeEntryPoint("zz", make_plugin("zz"))
    )
    monkeypatch.setenv("RIK_DISABLE_PLUGINS", "condor")
    with pytest.raises(UsageError, match="plugin 'condor', which is disabled: blocked by RIK_DISABLE_PLUGINS"):
        PluginHost.for_interface("condor").scheduler("condor")
    assert eps[0].loads == 0


PLUGIN_SOURCE = """
from rik import LaunchCommand, SchedulerInfo, hookimpl

@hookimpl
def rik_declare_schedulers():
    return [SchedulerInfo(name="zebra", help="from a distribution on sys.path")]

@hookimpl
def rik_build_launch_command(request):
    return LaunchCommand(argv=("zsub",))
"""


@pytest.mark.parametrize("layout", ["rik_zebra-2.3.dist-info", "rik_zebra.egg-info"])
def test_for_interface_reads_the_entry_point_from_the_distributions_metadata(tmp_path, monkeypatch, layout) -> None:
    (tmp_path / "rik_zebra_plugin.py").write_text(PLUGIN_SOURCE)
    (tmp_path / layout).mkdir()
    (tmp_path / layout / "entry_points.txt").write_text(
        "[console_scripts]\nzebra = other:main\n\n[rik]\n# the plugin\nzebra = rik_zebra_plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("rik.plugins._entry_points", lambda: pytest.fail("full discovery used"))
    h = PluginHost.for_interface("zebra")
    assert h.build_launch_command(LaunchRequest(interface="zebra")).argv == ("zsub",)
    (record,) = h.records
    assert (record.name, record.module, record.distribution) == ("zebra", "rik_zebra_plugin", "rik-zebra")
    assert record.version == ("2.3" if "dist-info" in layout else None)


def test_only_local_declares_that_it_runs_on_this_machine() -> None:
    assert {name for name, info in plugins_with().schedulers().items() if info.on_this_machine} == {"local"}
