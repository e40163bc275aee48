"""What ``rik manage`` does: every check first, then one atomic write."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from . import kernelspecs
from .cli import recreate_command, resources_from
from .config import KernelConfig
from .errors import UsageError
from .plugins import PluginHost

DEFAULT_KERNEL_CMD = "python3 -m ipykernel_launcher -f {connection_file}"


def default_kernel_cmd(interface: str) -> str:
    if interface == "local":
        return f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}"
    return DEFAULT_KERNEL_CMD


def add_kernel(opts: dict[str, Any], manage_argv: list[str]) -> None:
    host = PluginHost()
    interface = opts["interface"].strip().lower()
    scheduler = host.scheduler(interface)
    if opts.get("ssh_config") and not os.path.isfile(os.path.expanduser(opts["ssh_config"])):
        raise UsageError(f"--ssh-config {opts['ssh_config']!r}: no such file")
    config = KernelConfig(
        interface=interface,
        kernel_cmd=opts["kernel_cmd"] or default_kernel_cmd(interface),
        name=opts["name"] or "Python 3",
        language=opts["language"],
        host=opts["host"],
        tunnel_hosts=tuple(opts["tunnel_hosts"] or ()),
        resources=resources_from(opts),
        job_name=opts["job_name"],
        launch_cmd=opts["launch_cmd"],
        launch_args=opts["remote_launch_args"],
        workdir=opts["workdir"],
        precmd=opts["remote_precmd"],
        verbose=opts["verbose"],
        ssh_config=os.path.abspath(os.path.expanduser(opts["ssh_config"])) if opts.get("ssh_config") else None,
        host_keys=opts["host_keys"],
        askpass=opts["askpass"],
        transport=opts["transport"],
        queue_timeout=opts["queue_timeout"],
        grace=opts["grace"],
        interrupt_mode=opts["interrupt_mode"],
    ).validate(scheduler)
    # The plugin must be able to build its command now, not when a notebook starts the kernel.
    host.build_launch_command(config.request())
    name = config.kernel_name(scheduler)
    display = config.display_name(scheduler)
    spec = kernelspecs.build_spec(config, display, manage_argv, provisioner=bool(opts.get("provisioner")))
    destination = kernelspecs.kernels_dir(system=opts["system"], prefix=opts["prefix"])
    if opts.get("dry_run"):
        click.echo(f"Would add kernel {name!r} ({display}) in {destination}")
        return
    path = kernelspecs.install(name, spec, destination=destination, replace=opts["replace"])
    click.echo(f"Added kernel {name!r} ({display}) in {path}")


def show_kernels(names: tuple[str, ...]) -> None:
    if names:
        kernels = [kernelspecs.lookup(n) for n in names]
    else:
        kernels = [k for _, k in sorted(kernelspecs.find_kernels().items()) if kernelspecs.is_rik(k)]
        if not kernels:
            click.echo("No rik kernels are installed. Add one with `rik manage --add`.")
            return
    for kernel in kernels:
        click.echo(f"{kernel.name}: {kernel.spec.get('display_name', '')}")
        click.echo(f"  path: {kernel.path}")
        config = kernel.config
        if config is None:
            click.echo("  made by remote_ikernel: convert it with `rik manage --import " + kernel.name + "`")
            continue
        click.echo(f"  interface: {config.interface}")
        if config.host:
            click.echo(f"  host: {config.host}")
        if config.tunnel_hosts:
            click.echo(f"  tunnel hosts: {' '.join(config.tunnel_hosts)}")
        click.echo(f"  kernel command: {config.kernel_cmd}")
        for key, value in config.resources.given().items():
            click.echo(f"  {key}: {value}")
        for key in ("launch_cmd", "launch_args", "workdir", "precmd", "ssh_config", "askpass", "queue_timeout"):
            value = getattr(config, key)
            if value is not None:
                click.echo(f"  {key.replace('_', ' ')}: {value}")
        provisioner = "kernel_provisioner" in kernel.spec.get("metadata", {})
        if provisioner:
            click.echo(f"  provisioner: {kernel.spec['metadata']['kernel_provisioner'].get('provisioner_name')}")
        click.echo(f"  recreate: {recreate_command(config)}{' --provisioner' if provisioner else ''}")


def delete_kernels(names: tuple[str, ...], *, dry_run: bool = False) -> None:
    kernels = [kernelspecs.lookup(n) for n in names]  # all found, or nothing is deleted
    for kernel in kernels:
        if dry_run:
            click.echo(f"Would delete kernel {kernel.name!r} from {kernel.path}")
            continue
        kernelspecs.remove(kernel)
        click.echo(f"Deleted kernel {kernel.name!r} from {kernel.path}")


def import_kernels(names: tuple[str, ...], *, dry_run: bool = False) -> None:
    from .migrate import import_remote_ikernel

    import_remote_ikernel(names, dry_run=dry_run)
