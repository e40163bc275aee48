"""A rik kernel's settings: validated once at ``rik manage`` time, carried in kernel.json, read by the launcher."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .endpoint import Endpoint, parse_endpoint
from .errors import UsageError
from .models import RESOURCE_OPTIONS, LaunchRequest, Resources, SchedulerInfo
from .options import MANAGE_OPTIONS, Option, by_field, default

__all__ = ["CONFIG_VERSION", "Endpoint", "KernelConfig", "parse_endpoint", "recreate_command"]

CONFIG_VERSION = 1
CONNECTION_FILE = "{connection_file}"


@dataclass(frozen=True, kw_only=True)
class KernelConfig:
    """Everything a rik kernel needs to start; stored as JSON in the kernelspec's argv and metadata."""

    # Defaults and choices: rik.options.MANAGE_OPTIONS, the one table of `rik manage` options.
    interface: str
    kernel_cmd: str
    name: str
    language: str = default("language")
    host: str | None = None
    tunnel_hosts: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    job_name: str = default("job_name")
    launch_cmd: str | None = None
    launch_args: str | None = None
    workdir: str | None = None
    precmd: str | None = None
    verbose: bool = False
    ssh_config: str | None = None
    host_keys: str = default("host_keys")
    askpass: str | None = None
    transport: str = default("transport")
    queue_timeout: float | None = None
    grace: float = default("grace")  # how long a kernel outlives its last connection while idle (--grace)
    interrupt_mode: str = default("interrupt_mode")
    # Settings from a newer rik (or edited by hand) that this rik does not know: kept, written back unchanged.
    version: int = field(default=CONFIG_VERSION, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    extra_resources: dict[str, Any] = field(default_factory=dict, hash=False)

    # -- derived ---------------------------------------------------------------------------------------------
    def kernel_argv(self) -> list[str]:
        """``kernel_cmd`` split into words; ``{connection_file}`` stays its own word."""
        return shlex.split(self.kernel_cmd)

    def launch_args_argv(self) -> tuple[str, ...]:
        return tuple(shlex.split(self.launch_args)) if self.launch_args else ()

    def effective_transport(self) -> str:
        """``ipc`` for kernels known to bind Unix sockets themselves (ipykernel), else ``tcp``; ``direct``: the
        kernel runs on this machine and binds the frontend's own ports, with nothing tunnelled."""
        if self.transport != "auto":
            return self.transport
        return "ipc" if "ipykernel" in self.kernel_cmd else "tcp"

    def effective_interrupt_mode(self) -> str:
        if self.interrupt_mode != "auto":
            return self.interrupt_mode
        return "message" if "ipykernel" in self.kernel_cmd else "signal"

    def endpoint(self) -> Endpoint | None:
        return parse_endpoint(self.host) if self.host else None

    def chain(self) -> tuple[Endpoint, ...]:
        return tuple(parse_endpoint(h, "tunnel host") for h in self.tunnel_hosts)

    def request(self, command: tuple[str, ...] = ("/bin/sh", "-s")) -> LaunchRequest:
        return LaunchRequest(
            interface=self.interface,
            resources=self.resources,
            job_name=self.job_name,
            launch_cmd=self.launch_cmd,
            extra_args=self.launch_args_argv(),
            command=command,
        )

    # -- validation ------------------------------------------------------------------------------------------
    def validate(self, scheduler: SchedulerInfo) -> KernelConfig:
        """Check everything that can be checked without starting anything; return the normalised config
        (``--memory 0.5G`` becomes ``512M``, ``--walltime`` becomes ``H:MM:SS``)."""
        if CONNECTION_FILE not in self.kernel_cmd:
            raise UsageError(f"the kernel command must contain {CONNECTION_FILE}: {self.kernel_cmd!r}")
        for opt in MANAGE_OPTIONS:
            if opt.field is None:
                continue
            value = getattr(self.resources, opt.field) if opt.resource else getattr(self, opt.field)
            for word in value if opt.kind == "list" else (value,):
                if isinstance(word, str) and _CONTROL.search(word):
                    raise UsageError(
                        f"{opt.flag} must be one line of text: {word!r} has a line break or control character"
                    )
            problem = opt.check(value)
            if problem:
                raise UsageError(problem)
        _check_name(self.name)
        try:
            words = shlex.split(self.kernel_cmd)
        except ValueError as exc:
            raise UsageError(f"the kernel command does not parse ({exc}): {self.kernel_cmd!r}") from None
        if not words:
            raise UsageError("the kernel command is empty")
        if self.launch_args:
            try:
                shlex.split(self.launch_args)
            except ValueError as exc:
                raise UsageError(f"--remote-launch-args does not parse ({exc}): {self.launch_args!r}") from None
        local = scheduler.on_this_machine  # runs here: no SSH at all
        if scheduler.needs_host and not self.host:
            raise UsageError(f"interface {scheduler.name!r} needs --host (host, user@host or host:port)")
        if local and self.host:
            raise UsageError(
                f"interface {scheduler.name!r} runs the kernel on this machine: drop --host {self.host}, "
                f"or use --interface ssh --host {self.host}"
            )
        if self.host:
            parse_endpoint(self.host)
        if self.tunnel_hosts and not self.host and local:
            raise UsageError(f"--tunnel-hosts needs --host: interface {scheduler.name!r} does not use SSH")
        for hop in self.tunnel_hosts:
            parse_endpoint(hop, "tunnel host")
        given = self.resources.given()
        unsupported = sorted(set(given) - set(scheduler.options))
        if unsupported:
            opts = ", ".join(f"--{o}" for o in unsupported)
            takes = ", ".join(f"--{o}" for o in sorted(scheduler.options)) or "none"
            raise UsageError(
                f"interface {scheduler.name!r} does not take {opts} (it takes: {takes}; "
                "--remote-launch-args passes anything else to the scheduler)"
            )
        for key in ("queue", "account", "pe"):
            value = getattr(self.resources, key)
            if value is not None and (not value.strip() or re.search(r"\s", value) or value.startswith("-")):
                raise UsageError(f"bad {by_field(key).flag} {value!r}: one word, without spaces")
        if self.resources.pe and self.resources.cpus is None:
            raise UsageError("--pe needs --cpus (the number of slots in the parallel environment)")
        if self.launch_cmd is not None and not self.launch_cmd.strip():
            raise UsageError("--launch-cmd must not be empty")
        if self.workdir is not None and not (self.workdir.startswith("/") or self.workdir.startswith("~")):
            raise UsageError(
                f"--workdir {self.workdir!r} must be an absolute path or start with ~ "
                "(the remote side has no current directory it could be relative to)"
            )
        if self.askpass is not None:
            _check_askpass(self.askpass)
        if self.transport == "direct" and (self.host or self.tunnel_hosts):
            raise UsageError(
                "--transport direct runs the kernel's job on this machine: drop --host and --tunnel-hosts, "
                "or use --transport auto"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.job_name):
            raise UsageError(f"bad --job-name {self.job_name!r}: use letters, digits, '_', '.', '-'")
        return self.normalised(scheduler)

    def normalised(self, scheduler: SchedulerInfo) -> KernelConfig:
        """Memory and walltime in the one form every plugin reads the same way (``512M``, ``0:30:00``)."""
        from .helpers import normal_memory, normal_walltime

        changes: dict[str, Any] = {}
        if self.resources.memory is not None:
            changes["memory"] = normal_memory(self.resources.memory)
        if self.resources.walltime is not None:
            changes["walltime"] = normal_walltime(self.resources.walltime, walltime_style(scheduler))
        return replace(self, resources=replace(self.resources, **changes)) if changes else self

    def unknown_settings(self) -> list[str]:
        """Settings this rik does not know (from a newer rik, or edited by hand), as ``key`` or
        ``resources.key``."""
        return sorted(self.extra) + sorted(f"resources.{k}" for k in self.extra_resources)

    # -- naming ----------------------------------------------------------------------------------------------
    def kernel_name(self, scheduler: SchedulerInfo) -> str:
        """``rik_<interface>[_<host>]_<name>[_<launch program>][_<pe>][_<cpus>][_via_<hops>]``, lower case.

        Letters with accents lose them (``Café`` → ``cafe``); a name with letters that have no Latin spelling
        gets a short hash of itself, so ``日本語`` and ``中文`` make two kernels, not one."""
        parts = ["rik", self.interface]
        if self.host:
            parts.append(self.host)
        parts.append(_ascii_name(self.name))
        if self.launch_cmd:
            parts.append(self.launch_cmd.rsplit("/", 1)[-1])
        if self.resources.pe:
            parts.append(self.resources.pe)
        if self.resources.cpus:
            parts.append(str(self.resources.cpus))
        if self.tunnel_hosts:
            parts.append("via")
            parts.extend(self.tunnel_hosts)
        name = "_".join(parts)
        return re.sub(r"_+", "_", re.sub(r"[^\w]", "_", name, flags=re.ASCII)).strip("_").lower()

    def display_name(self, scheduler: SchedulerInfo) -> str:
        """Says what and where: ``SLURM Python 3 on rik-front (debug, 2 CPUs) via rik-gw``."""
        text = f"{scheduler.label} {self.name}"
        if self.host:
            text += f" on {self.host}"
        details = [
            v
            for v in (
                self.resources.queue,
                self.launch_cmd.rsplit("/", 1)[-1] if self.launch_cmd else None,
                self.resources.pe,
                f"{self.resources.cpus} CPU{'s' if self.resources.cpus != 1 else ''}" if self.resources.cpus else None,
                f"{self.resources.gpus} GPU{'s' if self.resources.gpus != 1 else ''}" if self.resources.gpus else None,
                self.resources.memory,
                self.resources.walltime,
            )
            if v
        ]
        if details:
            text += f" ({', '.join(details)})"
        if self.tunnel_hosts:
            text += f" via {' '.join(self.tunnel_hosts)}"
        return text

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("version", "extra", "extra_resources"):
            data.pop(key)
        data["tunnel_hosts"] = list(self.tunnel_hosts)
        data["resources"] = {k: v for k, v in data["resources"].items() if v is not None}
        data["resources"].update(self.extra_resources)
        defaults = KernelConfig(interface="", kernel_cmd="", name="")
        compact = {
            k: v
            for k, v in data.items()
            if k in ("interface", "kernel_cmd", "name", "language") or v != _plain(getattr(defaults, k))
        }
        return {"v": max(self.version, CONFIG_VERSION), **self.extra, **compact}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: Any) -> KernelConfig:
        """Read a config kernel.json carries, tolerantly: settings this rik does not know (from a newer rik) are
        kept in :attr:`extra` and :attr:`extra_resources` and written back unchanged; a missing or mistyped
        setting is a :class:`~rik.UsageError` that names it."""
        if not isinstance(data, dict):
            raise UsageError("bad rik kernel configuration: not a JSON object")
        data = dict(data)
        version = data.pop("v", CONFIG_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UsageError(f"bad rik kernel configuration: version {version!r} is not a positive whole number")
        missing = [k for k in ("interface", "kernel_cmd", "name") if not isinstance(data.get(k), str)]
        if missing:
            raise UsageError(f"bad rik kernel configuration: it has no {', '.join(repr(k) for k in missing)}")
        raw_resources = data.pop("resources", None)
        raw_resources = {} if raw_resources is None else raw_resources
        if not isinstance(raw_resources, dict):
            raise UsageError("bad rik kernel configuration: 'resources' is not a JSON object")
        resources = {
            k: _typed(by_field(k), v, f"resources.{k}") for k, v in raw_resources.items() if k in RESOURCE_OPTIONS
        }
        extra_resources = {k: v for k, v in raw_resources.items() if k not in RESOURCE_OPTIONS}
        known = {f.name for f in fields(cls)} - {"resources", "version", "extra", "extra_resources"}
        kwargs = {k: _typed(by_field(k), v, k) for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(
            resources=Resources(**resources),
            version=version,
            extra=extra,
            extra_resources=extra_resources,
            **kwargs,
        )

    @classmethod
    def loads(cls, text: str) -> KernelConfig:
        """Read the config the launcher is given, strictly: what this rik cannot honour in full (a newer rik's
        config, settings it does not know) is a :class:`~rik.UsageError` that says what to do."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"bad rik kernel configuration: {exc}") from None
        config = cls.from_json(data)
        if config.version > CONFIG_VERSION:
            raise UsageError(
                f"this kernel was made by a newer rik (config version {config.version}; this rik-core reads "
                f"{CONFIG_VERSION}): upgrade rik-core"
            )
        unknown = config.unknown_settings()
        if unknown:
            raise UsageError(
                f"this kernel has settings this rik does not know ({', '.join(unknown)}): upgrade rik-core, or "
                "make the kernel again with `rik manage --add ... --replace`"
            )
        return config

    def with_changes(self, **changes: Any) -> KernelConfig:
        return replace(self, **changes)

    @classmethod
    def from_options(cls, opts: dict[str, Any], *, interface: str, kernel_cmd: str) -> KernelConfig:
        """The config ``rik manage --add`` options describe (by the option table; not yet validated)."""
        kwargs: dict[str, Any] = {"interface": interface, "kernel_cmd": kernel_cmd}
        resources: dict[str, Any] = {}
        for opt in MANAGE_OPTIONS:
            if opt.field is None or opt.field in kwargs:
                continue
            value = opts.get(opt.dest)
            if opt.kind == "list":
                value = tuple(value or ())
            elif value is None:
                value = opt.default
            if opt.resource:
                resources[opt.field] = value
            else:
                kwargs[opt.field] = value
        if kwargs.get("ssh_config"):
            kwargs["ssh_config"] = os.path.abspath(os.path.expanduser(kwargs["ssh_config"]))
        return cls(resources=Resources(**resources), **kwargs)


def recreate_command(config: KernelConfig) -> str:
    """The ``rik manage --add`` command line that makes this kernel again (by the option table)."""
    args = ["rik", "manage", "--add"]
    for opt in MANAGE_OPTIONS:
        if opt.field is None:
            continue
        value = getattr(config.resources, opt.field) if opt.resource else getattr(config, opt.field)
        if value == opt.default and not opt.always:
            continue
        if opt.kind == "flag":
            if value:
                args.append(opt.flag)
        elif opt.kind == "list":
            args.extend([opt.flag, *value])
        elif value is not None:
            args.append(f"{opt.flag}={value:g}" if isinstance(value, float) else f"{opt.flag}={value}")
    return shlex.join(args)


def walltime_style(scheduler: SchedulerInfo) -> str:
    """How ``scheduler`` reads ``--walltime`` (see :func:`rik.helpers.walltime_seconds`): its
    ``walltime_style`` if it declares one, else ``hms``, the one form every scheduler reads the same way."""
    style = getattr(scheduler, "walltime_style", None)
    if isinstance(style, str):
        return style
    # Until SchedulerInfo carries walltime_style, the one first-party scheduler with forms of its own.
    return "slurm" if scheduler.name == "slurm" else "hms"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_name(name: str) -> None:
    if not any(c.isalnum() for c in name):
        raise UsageError(f"bad --name {name!r}: give a name with at least one letter or digit")


def _ascii_name(name: str) -> str:
    """``name`` in ASCII for a kernel name: accents dropped; a short hash added for what has no ASCII form."""
    decomposed = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = text.encode("ascii", "ignore").decode()
    if any(c.isalnum() and not c.isascii() for c in text):
        import hashlib

        digest = hashlib.sha256(unicodedata.normalize("NFC", name).encode()).hexdigest()[:8]
        return f"{ascii_text}_{digest}"
    return ascii_text


def _check_askpass(program: str) -> None:
    path = os.path.expanduser(program)
    if shutil.which(path) is None:
        if "/" not in path:
            what = "no such program on PATH"
        else:
            what = "no such file" if not os.path.exists(path) else "not an executable program"
        raise UsageError(f"--askpass {program!r}: {what} (give the path of a program that prints the answer)")


def _typed(opt: Option, value: Any, key: str) -> Any:
    """A setting read from kernel.json, checked against the option's kind."""
    if value is None and opt.default is None:
        return None
    kind = opt.kind
    ok = (
        (kind == "str" and isinstance(value, str))
        or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind == "flag" and isinstance(value, bool))
        or (kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value))
    )
    if not ok:
        expected = {"str": "text", "int": "a whole number", "float": "a number", "flag": "true or false"}
        raise UsageError(
            f"bad rik kernel configuration: {key!r} is {json.dumps(value)}, not {expected.get(kind, 'a list of words')}"
        )
    if kind == "float":
        return float(value)
    if kind == "list":
        return tuple(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Resources):
        return {}
    if isinstance(value, tuple):
        return list(value)
    return value
