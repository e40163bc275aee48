"""The plugin host: finds scheduler plugins, keeps broken ones from taking rik down, and calls their hooks.

There is no module-level plugin manager: build a :class:`PluginHost` where one is needed (tests build their own),
or :meth:`PluginHost.for_interface` where only one interface's plugin is needed (the launcher's start path).

Each interface belongs to the plugin that declared it, and every hook about an interface is called on that plugin
alone (pluggy's ``subset_hook_caller``): a plugin can never answer for another's interface, and need not check
``request.interface`` itself. Whatever a plugin returns is checked; a wrong value is an error naming the plugin.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import RikError, UsageError
from .hookspecs import hookimpl
from .models import RESOURCE_OPTIONS, Allocation, LaunchCommand, LaunchRequest, SchedulerInfo, SchedulerQuery

__all__ = ["ENTRY_POINT_GROUP", "KNOWN_DISTRIBUTIONS", "PluginHost", "PluginRecord", "hookimpl"]

ENTRY_POINT_GROUP = "rik"

#: Interfaces rik's own distributions provide, so that an unknown interface can say what to install.
KNOWN_DISTRIBUTIONS = {
    "ssh": "rik-ssh",
    "slurm": "rik-slurm",
    "sge": "rik-sge",
    "sge_qrsh": "rik-sge",
    "pbs": "rik-pbs",
    "lsf": "rik-lsf",
}

#: The built-in plugin's name, which is also its one interface's (rik.local.INTERFACE).
BUILTIN = "local"

_SPEC_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("rik_"))
_INTERFACE_NAME = re.compile(r"[a-z][a-z0-9_]*")


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
                    "on_this_machine": s.on_this_machine,
                }
                for s in self.schedulers
            ],
        }


def _disabled_from_env() -> frozenset[str]:
    raw = os.environ.get("RIK_DISABLE_PLUGINS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points  # only when plugins are looked for: it is not a light import

    return entry_points(group=ENTRY_POINT_GROUP)


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str | None


@dataclass(frozen=True)
class _EntryPoint:
    """An entry point read by :func:`_entry_points_named` (``load`` as ``importlib.metadata.EntryPoint``'s)."""

    name: str
    value: str
    dist: _Dist

    def load(self) -> object:
        import importlib

        module, _, attrs = self.value.partition(":")
        loaded: object = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            loaded = getattr(loaded, attr)
        return loaded


def rik_entry_points() -> list[_EntryPoint]:
    """Every ``rik`` entry point, read from the ``entry_points.txt`` of the distributions on ``sys.path`` (the
    first of a name wins, as for importlib.metadata) without importing importlib.metadata, whose
    ``entry_points()`` costs the launcher's start more than the rest of plugin loading (0.1 s with JupyterLab)."""
    seen: set[str] = set()
    found: list[_EntryPoint] = []
    for entry in sys.path:
        try:
            listing = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for item in listing:
            if item.endswith(".dist-info"):
                stem = item[: -len(".dist-info")]
            elif item.endswith(".egg-info"):
                stem = item[: -len(".egg-info")]
            else:
                continue
            raw_name, _, version = stem.partition("-")
            dist = re.sub(r"[-_.]+", "-", raw_name).lower()
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry or ".", item, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            section = None
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == ENTRY_POINT_GROUP and "=" in line:
                    name, _, value = (part.strip() for part in line.partition("="))
                    found.append(_EntryPoint(name, value, _Dist(dist, version.partition("-")[0] or None)))
    return found


def _entry_points_named(names: Iterable[str], distribution: str | None) -> list[_EntryPoint]:
    """The ``rik`` entry points called one of ``names``, or of ``distribution`` (see :func:`rik_entry_points`).
    Finding nothing is not an answer: the caller then looks at every entry point the standard way."""
    wanted = set(names)
    found = [
        ep
        for ep in rik_entry_points()
        if ep.name in wanted or (distribution is not None and ep.dist.name == distribution)
    ]
    return sorted(found, key=lambda ep: ep.name)


def _dist_name(ep: Any) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


@dataclass
class PluginHost:
    """Loads plugins and offers one typed method per hook.

    :param entry_points: load plugins from the ``rik`` entry point group (tests may turn this off).
    :param plugins: extra plugin objects to register, as ``(name, plugin)`` pairs.
    :param disabled: plugin names to block; defaults to ``RIK_DISABLE_PLUGINS`` (comma-separated).
    :param builtin: register rik-core's built-in ``local`` interface.
    :param only: load just the plugin that provides this interface when it can be found without loading the others
        (the built-in one, the entry point named for it, or one of the first-party distribution that provides it);
        otherwise every plugin, as without it. See :meth:`for_interface`.
    """

    entry_points: bool = True
    plugins: Iterable[tuple[str, object]] = ()
    disabled: frozenset[str] | None = None
    builtin: bool = True
    only: str | None = None
    records: list[PluginRecord] = field(init=False, default_factory=list)
    _schedulers: dict[str, tuple[SchedulerInfo, str]] = field(init=False, default_factory=dict)

    @classmethod
    def for_interface(cls, interface: str) -> PluginHost:
        """A host for the calls about ``interface`` alone, loading as few plugins as it can (the launcher's)."""
        return cls(only=interface)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager("rik")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("RIK_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(f"rik plugin trace: {text}"))
            self.pm.enable_tracing()
        disabled = _disabled_from_env() if self.disabled is None else self.disabled
        added: set[str] = set()
        if self.only is not None:
            if self.builtin and self.only == BUILTIN:
                self._add_builtin(disabled)
                added.add(BUILTIN)
            elif self.entry_points:
                for ep in _entry_points_named([self.only], KNOWN_DISTRIBUTIONS.get(self.only)):
                    self._add_entry_point(ep, disabled)
                    added.add(ep.name)
            if self.only in self._schedulers:
                self._add_extra(disabled)
                return
        # Every plugin: for `rik plugins`, `rik manage`, doctor, and when the fast path found nothing.
        if self.builtin and BUILTIN not in added:
            self._add_builtin(disabled)
        if self.entry_points:
            for ep in sorted(_entry_points(), key=lambda e: e.name):
                if ep.name not in added:
                    self._add_entry_point(ep, disabled)
        self._add_extra(disabled)

    # -- loading ---------------------------------------------------------------------------------------------
    def _add_builtin(self, disabled: frozenset[str]) -> None:
        from . import __version__, local

        self._add(BUILTIN, lambda: local, "rik-core", lambda: __version__, disabled)

    def _add_entry_point(self, ep: Any, disabled: frozenset[str]) -> None:
        dist = getattr(ep, "dist", None)
        self._add(ep.name, ep.load, _dist_name(ep), lambda: getattr(dist, "version", None), disabled, ep.value)

    def _add_extra(self, disabled: frozenset[str]) -> None:
        for name, plugin in self.plugins:
            self._add(name, _constant(plugin), None, _constant(None), disabled)

    def _add(
        self,
        name: str,
        load: Callable[[], object],
        distribution: str | None,
        version: Callable[[], str | None],
        disabled: frozenset[str],
        module_name: str | None = None,
    ) -> None:
        record: dict[str, Any] = dict(name=name, module=module_name or name, distribution=distribution)
        if name in disabled:
            self.records.append(
                PluginRecord(**record, status="disabled", error="blocked by RIK_DISABLE_PLUGINS", version=version())
            )
            return
        try:
            plugin = load()
        except Exception as exc:  # a plugin that fails to import must not take the CLI down
            self.records.append(
                PluginRecord(**record, status="broken", error=f"import failed: {_describe(exc)}", version=version())
            )
            return
        record["version"] = version()
        if isinstance(plugin, ModuleType):
            record["module"] = plugin.__name__
        try:
            hash(plugin)
        except TypeError:  # pluggy keeps plugins in sets: a SimpleNamespace of hooks becomes a module of them
            plugin = _as_module(name, plugin)
        hooks = sorted(n for n in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, n) is not None)
        record["hooks"] = tuple(hooks)
        unknown = [n for n in hooks if n not in _SPEC_NAMES]
        if unknown:
            error = f"implements unknown hook(s) {', '.join(unknown)} (misspelled?)"
            self.records.append(PluginRecord(**record, status="broken", error=error))
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self.records.append(PluginRecord(**record, status="broken", error=_describe(exc)))
            return
        try:
            declared = self._declared_by(plugin)
        except Exception as exc:
            self.pm.unregister(plugin)
            error = f"rik_declare_schedulers: {_describe(exc)}"
            self.records.append(PluginRecord(**record, status="broken", error=error))
            return
        clashes = [s.name for s in declared if s.name in self._schedulers]
        if clashes:
            self.pm.unregister(plugin)
            owners = ", ".join(f"{s} (already provided by {self._schedulers[s][1]})" for s in clashes)
            self.records.append(PluginRecord(**record, status="broken", error=f"declares taken interface {owners}"))
            return
        for info in declared:
            self._schedulers[info.name] = (info, name)
        self.records.append(PluginRecord(**record, schedulers=tuple(declared)))

    def _declared_by(self, plugin: object) -> tuple[SchedulerInfo, ...]:
        result: list[SchedulerInfo] = []
        for impl in self.pm.hook.rik_declare_schedulers.get_hookimpls():
            if impl.plugin is plugin:
                declared: Any = impl.function() or []
                for info in declared:
                    if not isinstance(info, SchedulerInfo):
                        raise TypeError(f"returned {type(info).__name__}, not SchedulerInfo")
                    if not isinstance(info.name, str) or not _INTERFACE_NAME.fullmatch(info.name):
                        raise ValueError(f"interface name {info.name!r} is not lower case [a-z0-9_]")
                    bad = set(info.options) - set(RESOURCE_OPTIONS)
                    if bad:
                        raise ValueError(f"unknown resource option(s) {sorted(bad)} for {info.name}")
                    if info.ended_pattern is not None:
                        _compile(info.ended_pattern, f"ended_pattern of {info.name}")
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
        """The name of the plugin that provides ``interface`` (a :class:`UsageError` when none does)."""
        self.scheduler(interface)
        return self._schedulers[interface][1]

    # -- the typed facade, one method per hook ----------------------------------------------------------------
    def build_launch_command(self, request: LaunchRequest) -> LaunchCommand:
        hook = "rik_build_launch_command"
        owner, result = self._call(hook, request.interface, required=True, request=request)
        if not isinstance(result, LaunchCommand):
            raise _wrong(owner, hook, result, "a LaunchCommand")
        argv = _argv(owner, hook, result.argv, "a launch argv")
        if result.ready_pattern is not None:
            _compile(result.ready_pattern, f"plugin {owner!r}: the ready_pattern from {hook}")
        if result.job_id_env is not None and not isinstance(result.job_id_env, str):
            raise _wrong(owner, hook, result.job_id_env, "a job_id_env string")
        return result if argv is result.argv else replace(result, argv=argv)

    def parse_allocation(self, request: LaunchRequest, output: str) -> Allocation:
        hook = "rik_parse_allocation"
        owner, result = self._call(hook, request.interface, request=request, output=output)
        if owner is None:
            return Allocation()
        if not isinstance(result, Allocation):
            raise _wrong(owner, hook, result, "an Allocation")
        for name in ("job_id", "node", "state", "reason", "error"):
            value = getattr(result, name)
            if value is not None and not isinstance(value, str):
                raise _wrong(owner, hook, value, f"a string for Allocation.{name}")
        return result

    def build_cancel_command(self, request: LaunchRequest, allocation: Allocation) -> tuple[str, ...]:
        hook = "rik_build_cancel_command"
        owner, result = self._call(hook, request.interface, request=request, allocation=allocation)
        if owner is None:
            return ()
        return _argv(owner, hook, result, "a cancel argv")

    def build_doctor_queries(self, request: LaunchRequest) -> tuple[SchedulerQuery, ...]:
        hook = "rik_build_doctor_queries"
        owner, result = self._call(hook, request.interface, request=request, optional=True)
        if owner is None or result is None:
            return ()
        if not isinstance(result, (list, tuple)):
            raise _wrong(owner, hook, result, "a sequence of SchedulerQuery")
        queries = []
        for query in result:
            if not isinstance(query, SchedulerQuery):
                raise _wrong(owner, hook, query, "a SchedulerQuery")
            argv = _argv(owner, hook, query.argv, f"an argv for {query.what}")
            listing = _argv(owner, hook, query.listing, f"a listing argv for {query.what}")
            if not argv:
                raise RikError(f"plugin {owner!r} returned an empty argv for {query.what} from {hook}")
            if query.option is not None and query.option not in RESOURCE_OPTIONS:
                raise RikError(f"plugin {owner!r} returned a query about unknown option {query.option!r} from {hook}")
            if query.missing is not None:
                _compile(query.missing, f"plugin {owner!r}: the missing pattern for {query.what} from {hook}")
            queries.append(replace(query, argv=argv, listing=listing))
        return tuple(queries)

    def _call(
        self, hook: str, interface: str, *, required: bool = False, optional: bool = False, **kwargs: Any
    ) -> tuple[Any, Any]:
        """Call ``hook`` on the plugin that owns ``interface`` alone: ``(plugin name, its answer)``, or
        ``(None, None)`` when that plugin does not implement the hook (an error when it is ``required``)."""
        owner = self.plugin_of(interface)
        plugin = self.pm.get_plugin(owner)
        caller = getattr(self.pm.hook, hook)
        if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
            if required:
                raise RikError(f"plugin {owner!r} provides interface {interface!r} but does not implement {hook}")
            return None, None
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        try:
            result = self.pm.subset_hook_caller(hook, others)(**kwargs) if others else caller(**kwargs)
        except RikError:
            raise
        except Exception as exc:
            raise RikError(f"plugin {owner!r} failed in {hook}: {_describe(exc)}") from exc
        if result is None and not optional:
            raise RikError(f"plugin {owner!r} returned None from {hook} for its own interface {interface!r}")
        return owner, result


def _as_module(name: str, plugin: object) -> ModuleType:
    """An unhashable plugin object's attributes (its hook functions) in a module, which is hashable."""
    module = ModuleType(f"rik-plugin-{name}")
    module.__dict__.update({attr: getattr(plugin, attr) for attr in dir(plugin) if not attr.startswith("__")})
    return module


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _wrong(owner: str, hook: str, value: object, expected: str) -> RikError:
    return RikError(f"plugin {owner!r} returned {type(value).__name__} from {hook}, not {expected}")


def _argv(owner: str, hook: str, value: object, what: str) -> tuple[str, ...]:
    """``value`` as an argv tuple; a shell string, or anything but a sequence of strings, is an error."""
    if isinstance(value, tuple) and all(isinstance(word, str) for word in value):
        return value
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return tuple(value)
    if isinstance(value, (list, tuple)):
        bad = next(word for word in value if not isinstance(word, str))
        raise RikError(f"plugin {owner!r} returned {what} with a {type(bad).__name__} in it from {hook}")
    raise _wrong(owner, hook, value, f"{what} (a tuple of strings)")


def _compile(pattern: object, what: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise RikError(f"{what} is a {type(pattern).__name__}, not a regular expression")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RikError(f"{what} is not a regular expression: {exc}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
