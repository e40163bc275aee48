"""What ``rik manage`` does: every check first, then one atomic write."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from typing import Any

import click

from . import kernelspecs
from .config import KernelConfig, recreate_command
from .errors import RikError, UsageError
from .models import SchedulerInfo
from .plugins import PluginHost

#: The kernel command of a remote kernel when --kernel-cmd is not given.
REMOTE_KERNEL_CMD = "python3 -m ipykernel_launcher -f {connection_file}"


def default_kernel_cmd(scheduler: SchedulerInfo) -> str:
    if scheduler.on_this_machine:
        return f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}"
    return REMOTE_KERNEL_CMD


def add_kernel(opts: dict[str, Any], manage_argv: list[str]) -> None:
    host = PluginHost()
    interface = opts["interface"].strip().lower()
    scheduler = host.scheduler(interface)
    if opts.get("ssh_config") and not os.path.isfile(os.path.expanduser(opts["ssh_config"])):
        raise UsageError(f"--ssh-config {opts['ssh_config']!r}: no such file")
    config = KernelConfig.from_options(
        opts, interface=interface, kernel_cmd=opts["kernel_cmd"] or default_kernel_cmd(scheduler)
    ).validate(scheduler)
    # The plugin must be able to build its command now, not when a notebook starts the kernel.
    host.build_launch_command(config.request())
    if scheduler.on_this_machine:
        check_local_kernel_command(config.kernel_argv())
    name = config.kernel_name(scheduler)
    display = config.display_name(scheduler)
    spec = kernelspecs.build_spec(config, display, manage_argv, provisioner=bool(opts.get("provisioner")))
    destination = kernelspecs.kernels_dir(system=opts["system"], prefix=opts["prefix"])
    exists = (destination / name).exists()
    if exists and not opts["replace"]:
        raise RikError(f"a kernel named {name!r} already exists in {destination}: pass --replace to overwrite it")
    if opts.get("dry_run"):
        verb = "replace" if exists else "add"
        click.echo(f"Would {verb} kernel {name!r} ({display}) in {destination / name}, with this kernel.json:")
        click.echo(json.dumps(spec, indent=1))
        return
    path = kernelspecs.install(name, spec, destination=destination, replace=opts["replace"])
    click.echo(f"{'Replaced' if exists else 'Added'} kernel {name!r} ({display}) in {path}")
    for key in ("walltime", "memory"):
        value = getattr(config.resources, key)
        if value is not None:
            click.echo(f"  {key} {value}")


def check_local_kernel_command(words: list[str]) -> None:
    """A kernel on this machine: its program must exist, and a ``python -m MODULE`` kernel's Python must have the
    module. Checked at ``--add`` so that the kernel does not fail later in a notebook."""
    program = os.path.expanduser(words[0])
    found = shutil.which(program)
    if found is None:
        raise UsageError(
            f"the kernel command's program {words[0]!r} is not found on this machine (the kernel runs here): "
            "give --kernel-cmd a program that exists"
        )
    if len(words) < 3 or words[1] != "-m" or not os.path.basename(found).startswith("python"):
        return
    module = words[2].split(".")[0]
    if os.path.abspath(found) == os.path.abspath(sys.executable):
        has_module = importlib.util.find_spec(module) is not None
    else:
        probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)"
        try:
            done = subprocess.run([found, "-c", probe, module], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return  # cannot tell: the kernel's own start will say
        has_module = done.returncode != 3
    if not has_module:
        package = "ipykernel" if module.startswith("ipykernel") else "the package that provides it"
        raise UsageError(
            f"{found} has no module {module!r}, so this kernel could not start: install {package} there "
            f"({shlex.quote(found)} -m pip install {package if package == 'ipykernel' else '...'}), "
            "or give --kernel-cmd a Python that has it"
        )


def show_kernels(names: tuple[str, ...], *, as_json: bool = False) -> None:
    if names:
        kernels = [kernelspecs.lookup(n, display_names=True) for n in names]
    else:
        kernels = [k for _, k in sorted(kernelspecs.find_kernels().items()) if kernelspecs.is_rik(k)]
        if not kernels:
            if as_json:
                click.echo("[]")
            else:
                click.echo("No rik kernels are installed. Add one with `rik manage --add`.")
            return
    records: list[dict[str, Any]] = []
    broken = 0
    for kernel in kernels:
        record: dict[str, Any] = {
            "name": kernel.name,
            "display_name": str(kernel.spec.get("display_name", "")),
            "path": str(kernel.path),
        }
        records.append(record)
        try:
            config = kernel.config
        except RikError as exc:
            broken += 1
            record["error"], record["fix"] = str(exc), kernel.remake_hint()
            if not as_json:
                click.echo(
                    f"rik: kernel {kernel.name!r} in {kernel.path.parent}: {record['error']}; {record['fix']}", err=True
                )
            continue
        if not as_json:
            click.echo(f"{kernel.name}: {record['display_name']}")
            click.echo(f"  path: {kernel.path}")
        if config is None:
            record["made_by"] = "remote_ikernel"
            record["fix"] = f"rik manage --import {kernel.name}"
            if not as_json:
                click.echo(f"  made by remote_ikernel: convert it with `rik manage --import {kernel.name}`")
            continue
        provisioner = kernel.spec.get("metadata", {}).get("kernel_provisioner")
        recreate = recreate_command(config) + (" --provisioner" if provisioner else "")
        record.update(config=config.to_json(), recreate=recreate, provisioner=bool(provisioner))
        unknown = config.unknown_settings()
        if unknown:
            record["unknown_settings"] = unknown
        if as_json:
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
        if provisioner:
            click.echo(f"  provisioner: {provisioner.get('provisioner_name')}")
        if unknown:
            newer = f" (made by a newer rik: config version {config.version})" if config.version > 1 else ""
            click.echo(f"  not understood, kept{newer}: {', '.join(unknown)}; upgrade rik-core to use them")
        click.echo(f"  recreate: {recreate}")
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    if broken:
        raise RikError("")  # each broken kernel had its line; the status says something is wrong


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
