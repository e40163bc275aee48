"""The ``rik doctor`` command: every check of each kernel, in the order a kernel needs them."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from ..config import KernelConfig
from ..errors import RikError
from ..kernelspecs import InstalledKernel, find_kernels, is_rik, lookup
from ..models import Allocation, LaunchCommand, SchedulerInfo
from ..plugins import PluginHost
from ..ssh import SSHSettings, SSHTransport
from .chain import chain_checks
from .probe import Remote
from .report import OK, PROBLEM, Check, Report
from .target import target_checks

__all__ = ["Doctor", "diagnose", "doctor"]


class Doctor:
    """The checks of one kernel, in order; a step that fails skips what depends on it."""

    def __init__(
        self, kernel: InstalledKernel, plugins: PluginHost, on_check: Callable[[Check], None] | None = None
    ) -> None:
        self.kernel = kernel
        self.plugins = plugins
        self.report = Report(kernel.name, str(kernel.spec.get("display_name", "")), str(kernel.path), on_check=on_check)

    def run(self) -> Report:
        report = self.report
        config = self.kernel.config
        if config is None:
            report.add(
                "config",
                "here",
                PROBLEM,
                "made by remote_ikernel, not by rik",
                f"convert it with `rik manage --import {self.kernel.name}`",
            )
            return report
        scheduler, command, cancel = self.plugin(config)
        submit = config.endpoint()
        chain = config.chain()
        hops = (*chain, submit) if submit else ()
        if not hops:
            target_checks(report, self.plugins, config, scheduler, command, cancel, None, ())
            return report
        try:
            transport = SSHTransport(
                SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass)
            )
        except RikError as exc:
            report.add("ssh", "here", PROBLEM, str(exc), "fix the kernel's --ssh-config, or install OpenSSH")
            return report
        workdir = Path(tempfile.mkdtemp(prefix="d-", dir=transport.dir))
        try:
            remote = Remote(transport, workdir)
            try:
                if chain_checks(report, config, command, remote, hops, transport):
                    target_checks(report, self.plugins, config, scheduler, command, cancel, remote, chain)
            finally:
                remote.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return report

    def plugin(self, config: KernelConfig) -> tuple[SchedulerInfo | None, LaunchCommand | None, tuple[str, ...]]:
        try:
            scheduler = self.plugins.scheduler(config.interface)
            config.validate(scheduler)
            command = self.plugins.build_launch_command(config.request())
            cancel = self.plugins.build_cancel_command(config.request(), Allocation(job_id="0"))
        except RikError as exc:
            self.report.add("plugin", "here", PROBLEM, f"interface {config.interface}: {exc}", "see `rik plugins`")
            return None, None, ()
        name = self.plugins.plugin_of(config.interface)
        record = next((r for r in self.plugins.records if r.name == name), None)
        origin = f"{record.distribution} {record.version or ''}".strip() if record and record.distribution else name
        self.report.add("plugin", "here", OK, f"interface {config.interface} from {origin}")
        return scheduler, command, cancel


def diagnose(kernel: InstalledKernel, plugins: PluginHost | None = None) -> Report:
    """Every check of one kernel (``rik doctor NAME``)."""
    return Doctor(kernel, plugins or PluginHost()).run()


@click.command()
@click.argument("kernels", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(kernels: tuple[str, ...], as_json: bool) -> None:
    """Check rik kernels (all, or those named): hosts, keys, forwarding, scheduler, kernel command.

    Each check is one line: ok, or the problem and how to fix it. The exit status is 1 when a check fails.
    """
    if kernels:
        selected = [lookup(name) for name in kernels]
    else:
        selected = [k for _, k in sorted(find_kernels().items()) if is_rik(k)]
        if not selected:
            if as_json:
                click.echo("[]")
            else:
                click.echo("No rik kernels are installed. Add one with `rik manage --add`.")
            return
    plugins = PluginHost()
    reports = []
    for kernel in selected:
        if not as_json:
            click.echo(f"{kernel.name}: {kernel.spec.get('display_name', '')}")
        checker = Doctor(kernel, plugins, None if as_json else lambda c: click.echo(c.line()))
        try:
            reports.append(checker.run())
        except OSError as exc:  # no temporary directory, too many processes...: say so, check the others
            checker.report.add("doctor", "here", PROBLEM, f"could not run the checks: {exc}")
            reports.append(checker.report)
    bad = [r for r in reports if not r.ok]
    count = f"{len(reports)} kernel{'s' if len(reports) != 1 else ''} checked"
    if as_json:
        click.echo(json.dumps([r.as_json() for r in reports], indent=2))
    elif not bad:
        click.echo(f"{count}: no problems found")
    if bad:
        names = ", ".join(r.kernel for r in bad)
        raise RikError(f"{count}: {len(bad)} with problems ({names}); the lines marked PROBLEM say how to fix them")
