"""``rik ps`` and ``rik gc``: running rik kernels, and clean-up after launchers that vanished."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from typing import Any

import click

from .config import KernelConfig
from .errors import RikError
from .state import KernelState, load_all


def _where(record: KernelState) -> str:
    config = record.config
    node = record.node or config.get("host") or "localhost"
    via = config.get("tunnel_hosts") or []
    return node + (f" via {' '.join(via)}" if via else "")


def _describe(record: KernelState) -> dict[str, Any]:
    return {
        "name": record.name,
        "status": "running" if record.launcher_alive() else "orphaned",
        "interface": record.config.get("interface"),
        "where": _where(record),
        "job_id": record.job_id,
        "launcher_pid": record.launcher_pid,
        "kernel_pid": record.kernel_pid,
        "remote_dir": record.remote_dir,
        "age_seconds": round(time.time() - record.started),
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ps(as_json: bool) -> None:
    """List running rik kernels (from their state files, checked live)."""
    rows = [_describe(r) for r in load_all()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No rik kernels are running.")
        return
    header = ("KERNEL", "STATUS", "INTERFACE", "WHERE", "JOB", "LAUNCHER", "AGE")
    table = [header] + [
        (
            r["name"],
            r["status"],
            str(r["interface"]),
            r["where"],
            r["job_id"] or "-",
            str(r["launcher_pid"]),
            f"{r['age_seconds'] // 60}m{r['age_seconds'] % 60:02d}s",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    orphans = sum(1 for r in rows if r["status"] == "orphaned")
    if orphans:
        click.echo(f"{orphans} orphaned kernel(s): their launcher is gone; `rik gc` ends them and their jobs.")


def _safe_dir(path: str | None) -> str | None:
    """Only directories the bootstrap makes (``…/rik-XXXXXXXX``) are ever removed."""
    if path and os.path.isabs(path) and os.path.basename(path.rstrip("/")).startswith("rik-") and ".." not in path:
        return path
    return None


def _clean_local(record: KernelState) -> list[str]:
    done = []
    pid = record.kernel_pid
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(30):
                time.sleep(0.1)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        done.append(f"ended kernel {pid}")
    directory = _safe_dir(record.remote_dir)
    if directory and os.path.isdir(directory):
        shutil.rmtree(directory, ignore_errors=True)
        done.append(f"removed {directory}")
    return done


def _clean_remote(record: KernelState, config: KernelConfig) -> list[str]:
    from .launcher import kernel_route
    from .plugins import PluginHost
    from .ssh import SSHSettings, SSHTransport

    host = PluginHost()
    request = config.request()
    command = host.build_launch_command(request)
    ssh = SSHTransport(SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass))
    done: list[str] = []
    submit, chain = config.endpoint(), config.chain()
    directory = _safe_dir(record.remote_dir)
    if record.kernel_pid or directory:
        if command.argv and not record.node:
            pass  # the job never started: there is no kernel to end
        else:
            target, hops = kernel_route(bool(command.argv), submit, chain, record.node)
            script = []
            if record.kernel_pid:
                p = int(record.kernel_pid)
                script.append(f"kill -TERM {p} 2>/dev/null; sleep 1; kill -KILL {p} 2>/dev/null")
            if directory:
                script.append(f"rm -rf {shlex.quote(directory)}")
            result = subprocess.run(
                ssh.command(target, hops, ["/bin/sh", "-c", "; ".join(script) + "; true"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                env=ssh.env(),
            )
            if result.returncode != 0:
                raise RikError(f"could not reach {target}: {(result.stderr or result.stdout).strip()}")
            if record.kernel_pid:
                done.append(f"ended kernel {record.kernel_pid} on {target}")
            if directory:
                done.append(f"removed {directory} on {target}")
    if record.job_id:
        from .models import Allocation

        argv = host.build_cancel_command(request, Allocation(job_id=record.job_id, node=record.node))
        if argv:
            full = ssh.command(submit, chain, argv) if submit else list(argv)
            subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=ssh.env())
            done.append(f"cancelled job {record.job_id} ({shlex.join(argv)})")
    return done


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be cleaned, change nothing.")
def gc(dry_run: bool) -> None:
    """End kernels and jobs whose launcher is gone, on every host, and say what was done."""
    failures = 0
    cleaned = 0
    for record in load_all():
        if record.launcher_alive():
            continue
        config = KernelConfig.from_json(record.config)
        if dry_run:
            click.echo(
                f"{record.name}: would end kernel {record.kernel_pid or '?'} on {_where(record)}"
                + (f" and cancel job {record.job_id}" if record.job_id else "")
            )
            continue
        try:
            done = _clean_local(record) if config.interface == "local" else _clean_remote(record, config)
        except (RikError, OSError, subprocess.TimeoutExpired) as exc:
            failures += 1
            click.echo(f"{record.name}: could not clean up: {exc}", err=True)
            continue
        record.remove()
        cleaned += 1
        click.echo(f"{record.name}: " + (", ".join(done) if done else "nothing was left; forgot it"))
    if not dry_run and not cleaned and not failures:
        click.echo("Nothing to clean up: every rik kernel's launcher is alive.")
    if failures:
        raise RikError(f"{failures} kernel(s) could not be cleaned up (see above); try again when the hosts answer")
