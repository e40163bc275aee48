"""``rik manage --import``: convert kernelspecs written by remote_ikernel 0.4.6 into rik kernels.

remote_ikernel's kernel.json runs ``[python, -m, remote_ikernel, --interface I, ..., --kernel_cmd CMD,
{connection_file}]`` and keeps the ``manage`` command line that made it in ``remote_ikernel_argv``. The launcher
options are the settings (they are what remote_ikernel ran); the manage command line only gives the kernel's
``--name``. Each kernel keeps its directory name (notebooks refer to kernels by it) and its display name, and is
rewritten whole, atomically, by the same code as ``rik manage --add``; one that cannot be converted is reported
and left exactly as it was.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import Any

import click

from . import kernelspecs
from .config import KernelConfig, recreate_command
from .errors import RikError
from .kernelspecs import InstalledKernel
from .models import Resources
from .plugins import PluginHost

__all__ = ["Conversion", "convert", "import_remote_ikernel", "is_remote_ikernel"]

INTERFACES = ("local", "ssh", "pbs", "sge", "sge_qrsh", "slurm", "lsf")
#: What remote_ikernel's launcher ran when the kernel.json gave no --kernel_cmd.
REMOTE_IKERNEL_KERNEL_CMD = "ipython kernel -f {host_connection_file}"
GRID_ENGINE = ("sge", "sge_qrsh")


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise _Refused(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _Refused(message or f"exit {status}")


def _launcher_parser() -> _Parser:
    """The options remote_ikernel 0.4.6's launcher reads from the kernel.json argv."""
    p = _Parser(prog="remote_ikernel", add_help=False)
    p.add_argument("connection_info")
    p.add_argument("--interface", default="local")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--pe")
    p.add_argument("--kernel_cmd", default=REMOTE_IKERNEL_KERNEL_CMD)
    p.add_argument("--workdir")
    p.add_argument("--host")
    p.add_argument("--precmd")
    p.add_argument("--launch-args")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--tunnel-hosts", nargs="+")
    p.add_argument("--launch-cmd")
    return p


def _manage_parser() -> _Parser:
    """remote_ikernel 0.4.6's ``manage`` options (all of them, so that abbreviations resolve as they did)."""
    p = _Parser(prog="remote_ikernel manage", add_help=False)
    p.add_argument("--show", "-s", nargs="*")
    p.add_argument("--add", "-a", action="store_true")
    p.add_argument("--delete", "-d", nargs="+")
    p.add_argument("--kernel_cmd", "-k")
    p.add_argument("--name", "-n")
    p.add_argument("--language", "-l")
    p.add_argument("--cpus", "-c", type=int)
    p.add_argument("--pe")
    p.add_argument("--host", "-x")
    p.add_argument("--interface", "-i")
    p.add_argument("--system", action="store_true")
    p.add_argument("--workdir")
    p.add_argument("--remote-precmd")
    p.add_argument("--launch-cmd")
    p.add_argument("--remote-launch-args")
    p.add_argument("--tunnel-hosts", "-t", nargs="+")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def is_remote_ikernel(kernel: InstalledKernel) -> bool:
    """A kernelspec written by remote_ikernel (and not already converted)."""
    argv = kernel.spec.get("argv")
    if _made_by_rik(kernel) or not isinstance(argv, list) or len(argv) < 3:
        return False
    return [str(a) for a in argv[1:3]] == ["-m", "remote_ikernel"]


def _made_by_rik(kernel: InstalledKernel) -> bool:
    metadata = kernel.spec.get("metadata")
    return isinstance(metadata, dict) and kernelspecs.METADATA_KEY in metadata


@dataclass
class Conversion:
    """What importing one kernel does: the new config, or why it cannot be converted."""

    kernel: InstalledKernel
    config: KernelConfig | None = None
    display_name: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.kernel.path.name!r} in {self.kernel.path.parent}"


def _manage_args(spec: dict[str, Any]) -> argparse.Namespace | None:
    """The ``remote_ikernel manage`` options kept in kernel.json, if they parse."""
    argv = spec.get("remote_ikernel_argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    try:
        parsed, _unknown = _manage_parser().parse_known_args([a for a in argv[1:] if a != "manage"])
    except _Refused:
        return None
    return parsed


def convert(kernel: InstalledKernel, host: PluginHost) -> Conversion:
    """Read one remote_ikernel kernelspec and build the rik kernel that does the same; nothing is written."""
    spec = kernel.spec
    result = Conversion(kernel=kernel, display_name=str(spec.get("display_name") or kernel.path.name))
    argv = [str(a) for a in spec.get("argv", [])]
    try:
        args = _launcher_parser().parse_args(argv[3:])
    except _Refused as exc:
        result.error = f"remote_ikernel's options in kernel.json do not parse: {exc}"
        return result
    interface = args.interface.strip().lower()
    if interface not in INTERFACES:
        result.error = f"unknown remote_ikernel interface {args.interface!r} (it knew {', '.join(INTERFACES)})"
        return result
    manage = _manage_args(spec)
    name = manage.name if manage is not None and manage.name else None
    if name is None:
        name = result.display_name
        result.notes.append("no --name in remote_ikernel_argv: the display name is the kernel's name")
    cpus = args.cpus if args.cpus and args.cpus > 1 else None  # remote_ikernel asked for CPUs only above 1
    pe = None
    if interface in GRID_ENGINE and cpus:
        pe = args.pe or "smp"  # remote_ikernel's default parallel environment
    elif args.pe:
        result.notes.append(f"--pe {args.pe} dropped: remote_ikernel used it only for Grid Engine with --cpus above 1")
    # remote_ikernel went through every --tunnel-hosts hop with ssh and started the interface on the last one:
    # for rik that hop is the host (the submit host of a scheduler), and the hops before it the gateways.
    hops = tuple(args.tunnel_hosts or ())
    target, gateways = (args.host, hops) if interface == "ssh" else (hops[-1] if hops else None, hops[:-1])
    launch_cmd, launch_args = args.launch_cmd, args.launch_args
    if manage is not None and manage.host and interface != "ssh":
        result.notes.append(f"remote_ikernel ignored --host {manage.host} for interface {interface}")
    if interface == "local" and target:
        interface = "ssh"
        result.notes.append(f"interface local on the last tunnel host is interface ssh with --host {target}")
    if interface in ("ssh", "local"):
        # remote_ikernel typed these into `ssh ARGS HOST` or `bash ARGS`: rik starts neither.
        for flag, value in (("--launch-cmd", launch_cmd), ("--remote-launch-args", launch_args)):
            if value:
                result.notes.append(f"{flag} {value!r} dropped: rik runs no {interface} command; use --ssh-config")
        launch_cmd = launch_args = None
    try:
        scheduler = host.scheduler(interface)
        config = KernelConfig(
            interface=interface,
            kernel_cmd=args.kernel_cmd.replace("{host_connection_file}", "{connection_file}"),
            name=name,
            language=str(spec.get("language") or "python"),
            host=target,
            tunnel_hosts=gateways,
            resources=Resources(cpus=cpus, pe=pe),
            launch_cmd=launch_cmd,
            launch_args=launch_args,
            workdir=args.workdir,
            precmd=args.precmd,
            verbose=args.verbose,
        ).validate(scheduler)
        host.build_launch_command(config.request())  # the plugin can build the job's command now, not later
    except RikError as exc:
        result.error = str(exc)
        return result
    extra = sorted(p.name for p in kernel.path.iterdir() if p.name != "kernel.json")
    if extra:
        result.notes.append(f"not kept: {', '.join(extra)}")
    result.config = config
    return result


def _find(names: tuple[str, ...]) -> tuple[list[InstalledKernel], list[str]]:
    """The kernels to import, and one line for each name that is not there."""
    found = kernelspecs.find_kernels()
    if not names:
        return [k for _, k in sorted(found.items()) if is_remote_ikernel(k)], []
    kernels: list[InstalledKernel] = []
    missing: list[str] = []
    for raw in names:
        kernel = found.get(raw.strip().lower())
        if kernel is None:
            missing.append(
                f"Cannot convert {raw!r}: no such kernel (see `rik manage --show` or `jupyter kernelspec list`)"
            )
        elif kernel not in kernels:
            kernels.append(kernel)
    return kernels, missing


def import_remote_ikernel(names: tuple[str, ...], *, dry_run: bool = False) -> None:
    """Convert remote_ikernel kernelspecs (all, or those named) into rik kernels, one line per kernel."""
    kernels, failures = _find(names)
    for line in failures:
        click.echo(f"rik: {line}", err=True)
    host = PluginHost()
    conversions: list[Conversion] = []
    for kernel in kernels:
        if _made_by_rik(kernel):
            click.echo(f"{kernel.name!r} is already a rik kernel: nothing to do")
            continue
        if not is_remote_ikernel(kernel):
            failures.append(kernel.name)
            click.echo(
                f"rik: Cannot convert {kernel.name!r} in {kernel.path.parent}: not made by remote_ikernel", err=True
            )
            continue
        conversions.append(convert(kernel, host))
    if not kernels and not failures:
        click.echo("No remote_ikernel kernels found: nothing to import.")
        return
    uses_ssh = False
    for c in conversions:
        if c.config is None:
            failures.append(c.kernel.name)
            click.echo(f"rik: Cannot convert {c.where}: {c.error}", err=True)
            continue
        notes = f" ({'; '.join(c.notes)})" if c.notes else ""
        equivalent = recreate_command(c.config)
        if dry_run:
            click.echo(f"Would convert {c.where}: {equivalent}{notes}")
            continue
        spec = kernelspecs.build_spec(c.config, c.display_name, shlex.split(equivalent))
        try:
            kernelspecs.install(c.kernel.path.name, spec, destination=c.kernel.path.parent, replace=True)
        except RikError as exc:
            failures.append(c.kernel.name)
            click.echo(f"rik: Cannot convert {c.where}: {exc}", err=True)
            continue
        uses_ssh = uses_ssh or bool(c.config.host)
        click.echo(f"Converted {c.where}: {equivalent}{notes}")
    if uses_ssh:
        click.echo("rik checks host keys (remote_ikernel did not): `rik doctor` tests each converted kernel's hosts.")
    if failures:
        raise RikError(f"{len(failures)} kernel(s) not converted (see above); the others are rik kernels now")
