"""A rik kernel's settings: validated once at ``rik manage`` time, carried in kernel.json, read by the launcher."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import UsageError
from .models import LaunchRequest, Resources, SchedulerInfo

__all__ = ["CONFIG_VERSION", "Endpoint", "KernelConfig", "parse_endpoint"]

CONFIG_VERSION = 1
CONNECTION_FILE = "{connection_file}"
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._%+-]+@)?(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$")


@dataclass(frozen=True)
class Endpoint:
    """A host as ssh reaches it: ``[user@]host[:port]``."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def jump(self) -> str:
        """The form ssh's ``-J`` takes."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_endpoint(text: str, what: str = "host") -> Endpoint:
    """Parse ``[user@]host[:port]``; a bad one is a :class:`UsageError` naming ``what``."""
    raw = text.strip()
    host, port = raw, None
    if raw.count(":") == 1 and not raw.startswith("["):
        host, _, port_text = raw.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad {what} {text!r}: the port after ':' must be a number from 1 to 65535")
        port = int(port_text)
    elif raw.startswith("[") and "]:" in raw:
        host, _, port_text = raw.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad {what} {text!r}: the port after ':' must be a number from 1 to 65535")
        port = int(port_text)
    if not host or not _HOST_RE.match(host) or host.startswith("-"):
        raise UsageError(f"bad {what} {text!r}: expected host, user@host or host:port")
    return Endpoint(host, port)


@dataclass(frozen=True, kw_only=True)
class KernelConfig:
    """Everything a rik kernel needs to start; stored as JSON in the kernelspec's argv and metadata."""

    interface: str
    kernel_cmd: str
    name: str
    language: str = "python"
    host: str | None = None
    tunnel_hosts: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    job_name: str = "rik"
    launch_cmd: str | None = None
    launch_args: str | None = None
    workdir: str | None = None
    precmd: str | None = None
    verbose: bool = False
    ssh_config: str | None = None
    host_keys: str = "strict"  # strict | accept-new
    askpass: str | None = None
    transport: str = "auto"  # auto | ipc | tcp | direct
    queue_timeout: float | None = None
    grace: float = 30.0
    interrupt_mode: str = "auto"  # auto | message | signal

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
        """Check everything that can be checked without starting anything; return the normalised config."""
        if CONNECTION_FILE not in self.kernel_cmd:
            raise UsageError(f"the kernel command must contain {CONNECTION_FILE}: {self.kernel_cmd!r}")
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
        if scheduler.needs_host and not self.host:
            raise UsageError(f"interface {scheduler.name!r} needs --host (host, user@host or host:port)")
        if self.host:
            parse_endpoint(self.host)
        if self.tunnel_hosts and not self.host and scheduler.name == "local":
            raise UsageError("--tunnel-hosts needs --host: the local interface does not use SSH")
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
        if self.resources.cpus is not None and self.resources.cpus < 1:
            raise UsageError(f"--cpus must be at least 1, not {self.resources.cpus}")
        if self.resources.gpus is not None and self.resources.gpus < 0:
            raise UsageError(f"--gpus must not be negative, not {self.resources.gpus}")
        if self.resources.pe and self.resources.cpus is None:
            raise UsageError("--pe needs --cpus (the number of slots in the parallel environment)")
        if self.launch_cmd is not None and not self.launch_cmd.strip():
            raise UsageError("--launch-cmd must not be empty")
        if self.host_keys not in ("strict", "accept-new"):
            raise UsageError(f"--host-keys must be strict or accept-new, not {self.host_keys!r}")
        if self.transport not in ("auto", "ipc", "tcp", "direct"):
            raise UsageError(f"--transport must be auto, ipc, tcp or direct, not {self.transport!r}")
        if self.transport == "direct" and (self.host or self.tunnel_hosts):
            raise UsageError(
                "--transport direct runs the kernel's job on this machine: drop --host and --tunnel-hosts, "
                "or use --transport auto"
            )
        if self.interrupt_mode not in ("auto", "message", "signal"):
            raise UsageError(f"--interrupt-mode must be auto, message or signal, not {self.interrupt_mode!r}")
        if self.queue_timeout is not None and self.queue_timeout <= 0:
            raise UsageError("--queue-timeout must be a positive number of seconds")
        if self.grace < 0:
            raise UsageError("--grace must not be negative")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.job_name):
            raise UsageError(f"bad --job-name {self.job_name!r}: use letters, digits, '_', '.', '-'")
        return self

    # -- naming ----------------------------------------------------------------------------------------------
    def kernel_name(self, scheduler: SchedulerInfo) -> str:
        """``rik_<interface>[_<host>]_<name>[_<launch program>][_<pe>][_<cpus>][_via_<hops>]``, lower case."""
        parts = ["rik", self.interface]
        if self.host:
            parts.append(self.host)
        parts.append(self.name)
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
        data["tunnel_hosts"] = list(self.tunnel_hosts)
        data["resources"] = {k: v for k, v in data["resources"].items() if v is not None}
        defaults = KernelConfig(interface="", kernel_cmd="", name="")
        compact = {
            k: v
            for k, v in data.items()
            if k in ("interface", "kernel_cmd", "name", "language") or v != _plain(getattr(defaults, k))
        }
        return {"v": CONFIG_VERSION, **compact}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KernelConfig:
        data = dict(data)
        version = data.pop("v", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise UsageError(f"this kernel was made by a newer rik (config version {version}): upgrade rik-core")
        known = {f.name for f in fields(cls)}
        resources = Resources(**{k: v for k, v in (data.pop("resources", None) or {}).items()})
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["tunnel_hosts"] = tuple(kwargs.get("tunnel_hosts", ()))
        return cls(resources=resources, **kwargs)

    @classmethod
    def loads(cls, text: str) -> KernelConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"bad rik kernel configuration: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError("bad rik kernel configuration: not a JSON object")
        return cls.from_json(data)

    def with_changes(self, **changes: Any) -> KernelConfig:
        return replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, Resources):
        return {}
    if isinstance(value, tuple):
        return list(value)
    return value
