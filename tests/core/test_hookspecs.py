"""The hook docstrings are the plugin author's reference: every hook says what it returns, what ``None`` means and
whether the call stops at the first answer; every hook has a typed method on the plugin host and is exercised by
the contract suite every plugin inherits."""

from __future__ import annotations

import inspect
import re

import pytest
import rik.testing
from rik import hookspecs
from rik.plugins import PluginHost

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("rik_"))
FIRSTRESULT = "Stops at first non-None result"
#: The plugin host's typed method for each hook (rik_declare_schedulers is read through ``scheduler()``).
FACADE = {
    "rik_declare_schedulers": "scheduler",
    "rik_build_launch_command": "build_launch_command",
    "rik_parse_allocation": "parse_allocation",
    "rik_build_cancel_command": "build_cancel_command",
    "rik_build_doctor_queries": "build_doctor_queries",
}


def spec_options(name: str) -> dict:
    manager = PluginHost(entry_points=False, builtin=False).pm
    return dict(manager.parse_hookspec_opts(hookspecs, name) or {})


def test_the_hooks_are_the_ones_this_test_knows() -> None:
    assert sorted(FACADE) == HOOKS, "a new hook: document it, give it a PluginHost method and a contract test"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_documents_its_return_value_and_what_none_means(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert doc, f"{name} has no docstring"
    assert ":return:" in doc, f"{name}: no :return: field"
    returns = doc.split(":return:", 1)[1]
    assert re.search(r"``None``|\bNone\b", returns), f"{name}: the :return: field does not say what None means"
    for param in inspect.signature(getattr(hookspecs, name)).parameters:
        assert f":param {param}:" in doc, f"{name}: argument {param!r} is not documented"


@pytest.mark.parametrize("name", HOOKS)
def test_firstresult_hooks_say_that_the_first_answer_wins(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    if spec_options(name).get("firstresult"):
        assert FIRSTRESULT in doc, f"{name} is firstresult: its docstring must say {FIRSTRESULT!r}"
    else:
        assert FIRSTRESULT not in doc, f"{name} calls every plugin: its docstring must not say {FIRSTRESULT!r}"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_typed_host_method_and_a_contract_test(name: str) -> None:
    method = getattr(PluginHost, FACADE[name], None)
    assert callable(method), f"PluginHost has no method for {name}"
    contract = inspect.getsource(rik.testing)
    assert f"plugins.{FACADE[name]}(" in contract, (
        f"the contract suite (rik.testing) never calls PluginHost.{FACADE[name]}"
    )
    if name != "rik_declare_schedulers":
        # Every hook about an interface is checked to reach the interface's own plugin alone: the suite's other
        # plugin, which answers everything, implements it too.
        assert f"def {name}(" in inspect.getsource(rik.testing._answers_everything), (
            f"the contract suite does not check that {name} is asked of the interface's own plugin alone"
        )
