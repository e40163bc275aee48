"""The plugin host: finds scheduler plugins, keeps broken ones from taking rik down, and calls their hooks.

There is no module-level plugin manager: build a :class:`PluginHost` where one is needed (tests build their own).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import RikError, UsageError
from .models import RESOURCE_OPTIONS, Allocation, LaunchCommand, LaunchRequest, SchedulerInfo

__all__ = ["ENTRY_POINT_GROUP", "KNOWN_DISTRIBUTIONS", "PluginHost", "PluginRecord", "hookimpl"]

ENTRY_POINT_GROUP = "rik"
hookimpl = pluggy.HookimplMarker("rik")

#: Interfaces rik's own distributions provide, so that an unknown interface can say what to install.
KNOWN_DISTRIBUTIONS = {
    "ssh": "rik-ssh",
    "slurm": "rik-slurm",
    "sge": "rik-sge",
    "sge_qrsh": "rik-sge",
    "pbs": "rik-pbs",
    "lsf": "rik-lsf",
}

_SPEC_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("rik_"))


@dataclass(frozen=True)
class PluginRecord:
    """One plugin as ``rik plugins`` shows it."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    schedulers: tuple[SchedulerInfo, ...] = ()
    hooks: tuple[str, ...] = ()
    status: str = "ok"  # ok, broken, disabled
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "hooks": list(self.hooks),
            "schedulers": [
                {
                    "name": s.name,
                    "help": s.help,
                    "options": sorted(s.options),
                    "needs_host": s.needs_host,
                    "launch_program": s.launch_program,
                }
                for s in self.schedulers
            ],
        }


def _disabled_from_env() -> frozenset[str]:
    raw = os.environ.get("RIK_DISABLE_PLUGINS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _entry_points() -> Iterable[Any]:
    from importlib_metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


@dataclass
class PluginHost:
    """Loads plugins and offers one typed method per hook.

    :param entry_points: load plugins from the ``rik`` entry point group (tests may turn this off).
    :param plugins: extra plugin objects to register, as ``(name, plugin)`` pairs.
    :param disabled: plugin names to block; defaults to ``RIK_DISABLE_PLUGINS`` (comma-separated).
    :param builtin: register rik-core's built-in ``local`` interface.
    """

    entry_points: bool = True
    plugins: Iterable[tuple[str, object]] = ()
    disabled: frozenset[str] | None = None
    builtin: bool = True
    records: list[PluginRecord] = field(init=False, default_factory=list)
    _schedulers: dict[str, tuple[SchedulerInfo, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager("rik")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("RIK_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(f"rik plugin trace: {text}"))
            self.pm.enable_tracing()
        disabled = _disabled_from_env() if self.disabled is None else self.disabled
        if self.builtin:
            from . import local

            self._add("local", lambda: local, "rik-core", _version("rik-core"), disabled)
        if self.entry_points:
            for ep in sorted(_entry_points(), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                self._add(
                    ep.name,
                    ep.load,
                    getattr(dist, "name", None),
                    getattr(dist, "version", None),
                    disabled,
                    module_name=ep.value,
                )
        for name, plugin in self.plugins:
            self._add(name, lambda p=plugin: p, None, None, disabled)

    # -- loading ---------------------------------------------------------------------------------------------
    def _add(
        self,
        name: str,
        load: Any,
        distribution: str | None,
        version: str | None,
        disabled: frozenset[str],
        module_name: str | None = None,
    ) -> None:
        record: dict[str, Any] = dict(name=name, module=module_name or name, distribution=distribution, version=version)
        if name in disabled:
            self.records.append(PluginRecord(**record, status="disabled", error="blocked by RIK_DISABLE_PLUGINS"))
            return
        try:
            plugin = load()
        except Exception as exc:  # a plugin that fails to import must not take the CLI down
            self.records.append(PluginRecord(**record, status="broken", error=f"import failed: {_describe(exc)}"))
            return
        if isinstance(plugin, ModuleType):
            record["module"] = plugin.__name__
        hooks = sorted(n for n in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, n) is not None)
        unknown = [n for n in hooks if n not in _SPEC_NAMES]
        if unknown:
            self.records.append(
                PluginRecord(
                    **record,
                    hooks=tuple(hooks),
                    status="broken",
                    error=f"implements unknown hook(s) {', '.join(unknown)} (misspelled?)",
                )
            )
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self.records.append(PluginRecord(**record, hooks=tuple(hooks), status="broken", error=_describe(exc)))
            return
        try:
            declared = self._declared_by(plugin)
        except Exception as exc:
            self.pm.unregister(plugin)
            self.records.append(
                PluginRecord(
                    **record, hooks=tuple(hooks), status="broken", error=f"rik_declare_schedulers: {_describe(exc)}"
                )
            )
            return
        clashes = [s.name for s in declared if s.name in self._schedulers]
        if clashes:
            self.pm.unregister(plugin)
            owners = ", ".join(f"{s} (already provided by {self._schedulers[s][1]})" for s in clashes)
            self.records.append(
                PluginRecord(**record, hooks=tuple(hooks), status="broken", error=f"declares taken interface {owners}")
            )
            return
        for info in declared:
            self._schedulers[info.name] = (info, name)
        self.records.append(PluginRecord(**record, hooks=tuple(hooks), schedulers=tuple(declared)))

    def _declared_by(self, plugin: object) -> tuple[SchedulerInfo, ...]:
        result: list[SchedulerInfo] = []
        for impl in self.pm.hook.rik_declare_schedulers.get_hookimpls():
            if impl.plugin is plugin:
                declared: Any = impl.function() or []
                for info in declared:
                    if not isinstance(info, SchedulerInfo):
                        raise TypeError(f"returned {type(info).__name__}, not SchedulerInfo")
                    bad = set(info.options) - set(RESOURCE_OPTIONS)
                    if bad:
                        raise ValueError(f"unknown resource option(s) {sorted(bad)} for {info.name}")
                    result.append(info)
        return tuple(result)

    # -- queries ---------------------------------------------------------------------------------------------
    def schedulers(self) -> dict[str, SchedulerInfo]:
        return {name: info for name, (info, _plugin) in sorted(self._schedulers.items())}

    def scheduler(self, interface: str) -> SchedulerInfo:
        """The scheduler named ``interface``, or a :class:`UsageError` that says how to get it."""
        found = self._schedulers.get(interface)
        if found:
            return found[0]
        dist = KNOWN_DISTRIBUTIONS.get(interface)
        for record in self.records:
            if record.status != "ok" and (record.name == interface or (dist and record.distribution == dist)):
                raise UsageError(
                    f"interface {interface!r} comes from plugin {record.name!r}, which is {record.status}: "
                    f"{record.error} (see `rik plugins`)"
                )
        known = ", ".join(sorted(self._schedulers)) or "none"
        if dist:
            raise UsageError(f"interface {interface!r} is not installed: install it with `pip install {dist}`")
        raise UsageError(f"unknown interface {interface!r} (installed: {known}; see `rik plugins`)")

    def plugin_of(self, interface: str) -> str:
        self.scheduler(interface)
        return self._schedulers[interface][1]

    # -- the typed facade, one method per hook ----------------------------------------------------------------
    def build_launch_command(self, request: LaunchRequest) -> LaunchCommand:
        result = self._call("rik_build_launch_command", request.interface, request=request)
        if not isinstance(result, LaunchCommand):
            raise RikError(f"no plugin builds a launch command for interface {request.interface!r}")
        if not all(isinstance(word, str) for word in result.argv):
            raise RikError(f"plugin {self.plugin_of(request.interface)!r} returned a launch argv with non-strings")
        return result

    def parse_allocation(self, request: LaunchRequest, output: str) -> Allocation:
        result = self._call("rik_parse_allocation", request.interface, request=request, output=output)
        return result if isinstance(result, Allocation) else Allocation()

    def build_cancel_command(self, request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
        result = self._call("rik_build_cancel_command", request.interface, request=request, allocation=allocation)
        return tuple(result or ())

    def _call(self, hook: str, interface: str, **kwargs: Any) -> Any:
        self.scheduler(interface)
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except RikError:
            raise
        except Exception as exc:
            raise RikError(f"plugin {self.plugin_of(interface)!r} failed in {hook}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _version(dist: str) -> str | None:
    from importlib_metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
