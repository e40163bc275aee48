"""The plugin host: built-in behaviour through the same hooks, and broken plugins kept at arm's length."""

from __future__ import annotations

import types

import pytest
from rik import Allocation, LaunchCommand, LaunchRequest, RikError, SchedulerInfo, UsageError, hookimpl
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


def host(*plugins: tuple[str, object], disabled: frozenset[str] = frozenset()) -> PluginHost:
    return PluginHost(entry_points=False, plugins=plugins, disabled=disabled)


def test_local_is_built_in_and_goes_through_the_hooks() -> None:
    h = host()
    assert list(h.schedulers()) == ["local"]
    request = LaunchRequest(interface="local")
    assert h.build_launch_command(request).argv == ()
    assert h.build_cancel_command(request, Allocation()) == ()


def test_a_plugin_is_called_only_for_its_own_interface() -> None:
    h = host(("condor", make_plugin()))
    request = LaunchRequest(interface="condor")
    assert h.build_launch_command(request).argv == ("submit", "-i", "/bin/sh", "-s")
    assert h.parse_allocation(request, "job started") == Allocation(job_id="7", node="n1")
    assert h.build_cancel_command(request, Allocation(job_id="7")) == ("cancel", "7")
    assert h.build_launch_command(LaunchRequest(interface="local")).argv == ()


def test_a_misspelled_hook_marks_the_plugin_broken_by_name_and_others_work() -> None:
    @hookimpl
    def rik_build_lanch_command(request):  # typo
        return None

    h = host(("typo", make_plugin("typo", rik_build_lanch_command=rik_build_lanch_command)), ("condor", make_plugin()))
    record = next(r for r in h.records if r.name == "typo")
    assert record.status == "broken" and "rik_build_lanch_command" in (record.error or "")
    assert "condor" in h.schedulers() and "typo" not in h.schedulers()


def test_a_plugin_whose_declaration_raises_is_broken_not_fatal() -> None:
    @hookimpl
    def rik_declare_schedulers():
        raise RuntimeError("boom")

    h = host(("bad", make_plugin("bad", rik_declare_schedulers=rik_declare_schedulers)))
    record = next(r for r in h.records if r.name == "bad")
    assert record.status == "broken" and "boom" in (record.error or "")
    with pytest.raises(UsageError, match=r"plugin 'bad', which is broken: .*boom"):
        h.scheduler("bad")


def test_a_plugin_that_raises_while_building_is_reported_by_name() -> None:
    @hookimpl
    def rik_build_launch_command(request):
        raise KeyError("oops")

    h = host(("flaky", make_plugin("flaky", rik_build_launch_command=rik_build_launch_command)))
    with pytest.raises(RikError, match="plugin 'flaky' failed in rik_build_launch_command"):
        h.build_launch_command(LaunchRequest(interface="flaky"))


def test_plugins_can_be_disabled_by_name() -> None:
    h = host(("condor", make_plugin()), disabled=frozenset({"condor"}))
    assert next(r for r in h.records if r.name == "condor").status == "disabled"
    assert "condor" not in h.schedulers()


def test_two_plugins_cannot_claim_one_interface() -> None:
    h = host(("a", make_plugin("same")), ("b", make_plugin("same")))
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
        host().scheduler("lsf")


def test_tracing_writes_hook_calls_to_stderr(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RIK_TRACE_PLUGINS", "1")
    h = host(("condor", make_plugin()))
    h.build_launch_command(LaunchRequest(interface="condor"))
    assert "rik_build_launch_command" in capsys.readouterr().err
