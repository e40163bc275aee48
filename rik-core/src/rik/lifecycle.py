"""``rik ps``, ``rik attach``, ``rik stop`` and ``rik gc``: the kernels rik keeps, like tmux keeps sessions.

A kernel whose launcher is gone (the Jupyter server restarted, the laptop rebooted, ``kill -9``) lives on in its
job for its window (``--grace``, counted while it is idle and disconnected, never past walltime). ``rik ps`` lists
it as *detached* with when it will be ended; ``rik attach`` connects it again and writes a connection file for
``jupyter console --existing``; ``rik stop`` ends it and its job now; ``rik gc`` ends those whose window is over
or that cannot come back.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import click

from .config import KernelConfig
from .errors import RikError, UsageError
from .state import KernelState, load_all

__all__ = ["attach", "gc", "ps", "stop"]


# -------------------------------------------------------------------------------------------------------------
# What a record says
# -------------------------------------------------------------------------------------------------------------


def _where(record: KernelState) -> str:
    config = record.config
    node = record.node or config.get("host") or "localhost"
    via = config.get("tunnel_hosts") or []
    return node + (f" via {' '.join(via)}" if via else "")


def status_of(record: KernelState, now: float | None = None) -> str:
    """``attached``/``reconnecting``/``starting`` (a launcher runs), ``parked`` (waiting for a restart),
    ``detached`` (waiting to be reattached), ``ended`` (its window is over), ``orphaned`` (nothing can reconnect:
    ``rik gc`` cleans up)."""
    now = time.time() if now is None else now
    if record.launcher_alive():
        return record.status if record.status in ("attached", "reconnecting", "starting", "attaching") else "attached"
    if not record.hold_dir:
        return "orphaned"
    ends = record.ends_at()
    if ends is not None and ends < now:
        return "ended"
    return "parked" if record.status == "parked" else "detached"


def _ends(record: KernelState, status: str) -> str:
    if status not in ("parked", "detached"):
        return "-"
    ends = record.ends_at()
    if ends is None:
        return "-"
    left = max(0, int(ends - time.time()))
    return f"in {left // 3600}h{left % 3600 // 60:02d}m" if left >= 3600 else f"in {left // 60}m{left % 60:02d}s"


def _describe(record: KernelState) -> dict[str, Any]:
    status = status_of(record)
    ends = record.ends_at() if status in ("parked", "detached") else None
    return {
        "name": record.name,
        "kernel": record.kernel_name or record.name,
        "display_name": record.config.get("name"),
        "status": status,
        "interface": record.config.get("interface"),
        "where": _where(record),
        "job_id": record.job_id,
        "launcher_pid": record.launcher_pid,
        "kernel_pid": record.kernel_pid,
        "remote_dir": record.remote_dir,
        "notebook": record.session_name,
        "ends_at": ends,
        "ends": _ends(record, status),
        "age_seconds": round(time.time() - record.started),
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ps(as_json: bool) -> None:
    """List rik kernels: attached, reconnecting, parked (waiting for a restart) or detached (waiting to be
    reattached), with when a kernel nobody uses will be ended."""
    rows = [_describe(r) for r in load_all()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No rik kernels are running.")
        return
    header = ("NAME", "KERNEL", "STATUS", "WHERE", "JOB", "ENDS", "AGE")
    table = [header] + [
        (
            r["name"],
            str(r["display_name"] or r["kernel"]),
            r["status"],
            r["where"],
            r["job_id"] or "-",
            r["ends"],
            f"{r['age_seconds'] // 60}m{r['age_seconds'] % 60:02d}s",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    detached = sum(1 for r in rows if r["status"] in ("detached", "parked"))
    if detached:
        click.echo(
            f"{detached} kernel(s) without a frontend: `rik attach NAME` reconnects one, `rik stop NAME` ends it."
        )
    stale = sum(1 for r in rows if r["status"] in ("orphaned", "ended"))
    if stale:
        click.echo(f"{stale} kernel(s) whose launcher is gone for good: `rik gc` ends them and their jobs.")


def find(name: str) -> KernelState:
    """The record named ``name`` (its id, its kernelspec's name or display name, or its notebook)."""
    records = list(load_all())
    for key in ("name", "kernel_name", "display", "session_name"):
        found = [r for r in records if (r.config.get("name") if key == "display" else getattr(r, key)) == name]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(r.name for r in found)
            raise UsageError(f"{name!r} names {len(found)} kernels ({ids}): give one of these names")
    raise RikError(f"no rik kernel named {name!r} (`rik ps` lists them)")


# -------------------------------------------------------------------------------------------------------------
# Reaching a kernel's holder
# -------------------------------------------------------------------------------------------------------------


def _transport(config: KernelConfig) -> Any:
    from .ssh import SSHSettings, SSHTransport

    return SSHTransport(SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass))


def stop_through_holder(record: KernelState, config: KernelConfig, timeout: float = 20.0) -> str:
    """Attach to the kernel's holder and send ``stop``. Returns ``stopped`` or ``gone`` (nothing there)."""
    from .launch.protocol import parse_marker, split_lines
    from .launch.session import Session

    assert record.hold_dir
    ssh = _transport(config)
    submit, chain = config.endpoint(), config.chain()
    shell = ["/bin/sh", "-s"]
    seen: list[str] = []
    pending = [b""]

    def on_output(data: bytes) -> None:
        lines, pending[0] = split_lines(pending[0], data)
        for line in lines:
            marker = parse_marker(line)
            if marker is not None:
                seen.append(marker.kind)

    session = Session(lambda: ssh.command(submit, chain, shell) if submit else shell, ssh.env(), on_output)
    session.hold_dir = record.hold_dir
    session.offset = record.offset
    session.attach()
    deadline = time.monotonic() + timeout
    sent = False
    try:
        while time.monotonic() < deadline:
            fd = session.fd
            if fd is None:
                break
            readable, _, _ = select.select([fd], [], [], 0.25)
            if readable and not session.readable():
                break
            if session.state == "attached" and not sent:
                sent = session.write(b"stop\n")
            if "END" in seen or "HELD-EXIT" in seen:
                break
    finally:
        session.close()
    if session.state == "gone":
        return "gone"
    if not session.attached_once:
        from .ssh import explain_ssh_failure

        why = session.error or explain_ssh_failure("\n".join(session.tail)) or "; ".join(session.tail[-2:])
        raise RikError(f"could not reach {submit or 'the kernel'}: {why or 'no answer'}")
    return "stopped"


def holder_alive(record: KernelState, config: KernelConfig) -> bool | None:
    """Whether the kernel's holder is still there (``None``: its host cannot be reached now)."""
    if not record.hold_dir:
        return False
    argv = ["test", "-p", f"{record.hold_dir}/in"]
    submit = config.endpoint()
    if submit is not None:
        ssh = _transport(config)
        argv, env = ssh.command(submit, config.chain(), argv), ssh.env()
    else:
        env = None
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(result.returncode)


def _cancel(record: KernelState, config: KernelConfig) -> str | None:
    if not record.job_id:
        return None
    from .launch.launcher import cancel_job
    from .plugins import PluginHost

    plugins = PluginHost()
    request = config.request()
    if not plugins.build_launch_command(request).argv:
        return None
    cancel_job(plugins, request, _transport(config), config.endpoint(), config.chain(), record.job_id, record.node)
    return f"cancelled job {record.job_id}"


# -------------------------------------------------------------------------------------------------------------
# rik stop, rik attach
# -------------------------------------------------------------------------------------------------------------


@click.command()
@click.argument("name")
def stop(name: str) -> None:
    """End a rik kernel and its job now (a detached or parked one, or one a launcher runs)."""
    record = find(name)
    if record.launcher_alive():
        os.kill(record.launcher_pid, signal.SIGTERM)  # the launcher stops the kernel and cancels the job
        deadline = time.monotonic() + 30
        while record.launcher_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if record.launcher_alive():
            raise RikError(f"the launcher of {record.name} (pid {record.launcher_pid}) did not stop within 30 s")
        click.echo(
            f"Stopped {record.name}: its launcher ended the kernel"
            + (f" and job {record.job_id}" if record.job_id else "")
        )
        return
    config = KernelConfig.from_json(record.config)
    if not record.hold_dir:
        raise RikError(
            f"{record.name} cannot be reached (its launcher is gone and it has no holder): `rik gc` cleans up"
        )
    result = stop_through_holder(record, config)
    if result == "gone":
        raise RikError(
            f"{record.name} has already ended"
            + (f" (job {record.job_id} is no longer there)" if record.job_id else "")
            + ": `rik gc` forgets it"
        )
    done = ["ended the kernel"]
    cancelled = _cancel(record, config)
    if cancelled:
        done.append(cancelled)
    record.remove()
    click.echo(f"Stopped {record.name}: " + ", ".join(done))


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@click.command()
@click.argument("name")
@click.option(
    "--connection-file",
    type=click.Path(dir_okay=False),
    help="Where to write the connection file (default: Jupyter's runtime directory).",
)
def attach(name: str, connection_file: str | None) -> None:
    """Reconnect a detached rik kernel (its state intact) and write a connection file for `jupyter console
    --existing`. Runs until Ctrl-C, which detaches again; a shutdown from the frontend ends the kernel."""
    record = find(name)
    if record.launcher_alive():
        raise RikError(
            f"{record.name} is attached to a running launcher (pid {record.launcher_pid}): use its frontend, "
            "or `rik stop` it"
        )
    if not record.hold_dir:
        raise RikError(f"{record.name} cannot be reattached (it has no holder): `rik gc` cleans up")
    key = record.key()
    if not key:
        raise RikError(f"{record.name} cannot be reattached: its key file is gone (`rik stop` ends it)")
    if status_of(record) == "ended":
        raise RikError(f"{record.name}'s window is over: the kernel has ended (`rik gc` forgets it)")
    from jupyter_core.paths import jupyter_runtime_dir

    from .launch.launcher import Launcher
    from .launch.logs import redact, setup_logging

    config = KernelConfig.from_json(record.config)
    path = Path(connection_file or Path(jupyter_runtime_dir()) / f"kernel-rik-attach-{record.name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    ports = dict(
        zip(("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"), _free_ports(5), strict=True)
    )
    connection = {
        **ports,
        "ip": "127.0.0.1",
        "transport": "tcp",
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": record.kernel_name or "",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(connection, fh)
    setup_logging(verbose=config.verbose or bool(os.environ.get("RIK_DEBUG")))
    redact.secrets.append(key)
    click.echo(f"Connection file: {path}")
    click.echo(f"  jupyter console --existing {shlex.quote(str(path))}")
    click.echo("Ctrl-C here detaches again (the kernel keeps running).", err=True)
    try:
        status = Launcher(config, str(path), connection, adopt=record, reattach=True).run()
    finally:
        path.unlink(missing_ok=True)
    if status:
        raise RikError("")


# -------------------------------------------------------------------------------------------------------------
# rik gc
# -------------------------------------------------------------------------------------------------------------


def _on_this_machine(config: KernelConfig) -> bool:
    from .plugins import PluginHost

    try:
        return PluginHost.for_interface(config.interface).scheduler(config.interface).on_this_machine
    except RikError:
        return not config.host  # its plugin is gone: a kernel without a host ran (or was submitted) here


def _safe_dir(path: str | None) -> str | None:
    """Only directories the bootstrap makes (``…/rik-XXXXXXXX``) are ever removed."""
    if path and os.path.isabs(path) and os.path.basename(path.rstrip("/")).startswith("rik-") and ".." not in path:
        return path
    return None


def _is_kernel(pid: int, marker: str) -> bool:
    """``pid`` is still the kernel: its command line names ``marker`` (its connection file), so a pid reused
    by another process is never signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return marker.encode() in fh.read()
    except OSError:
        return False


def _clean_local(record: KernelState) -> list[str]:
    done = []
    pid = record.kernel_pid
    if pid and _is_kernel(pid, record.connection_file):
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(30):
                time.sleep(0.1)
                if not _is_kernel(pid, record.connection_file):
                    break
            else:
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
    from .launch.launcher import kernel_route
    from .plugins import PluginHost

    done: list[str] = []
    if record.hold_dir:
        try:
            outcome = stop_through_holder(record, config)
        except RikError:
            outcome = None  # its submit host does not answer: try the kernel's host
        if outcome == "gone":
            return ["its job had already ended; forgot it"]
        if outcome == "stopped":
            done.append("ended the kernel through its holder")
            cancelled = _cancel(record, config)
            return [*done, cancelled] if cancelled else done
    host = PluginHost()
    request = config.request()
    command = host.build_launch_command(request)
    ssh = _transport(config)
    submit, chain = config.endpoint(), config.chain()
    directory = _safe_dir(record.remote_dir)
    if not done and (record.kernel_pid or directory) and not (command.argv and not record.node):
        target, hops = kernel_route(bool(command.argv), submit, chain, record.node)
        script = []
        if record.kernel_pid and directory:
            p = int(record.kernel_pid)
            # Only the kernel: a process whose command line names the kernel's private directory.
            check = f"grep -q {shlex.quote(directory)} /proc/{p}/cmdline 2>/dev/null"
            script.append(f"if {check}; then kill -TERM {p}; sleep 1; {check} && kill -KILL {p}; echo RIK-KILLED; fi")
        if directory:
            script.append(f"rm -rf {shlex.quote(directory)}")
        if script:
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
            if "RIK-KILLED" in result.stdout:
                done.append(f"ended kernel {record.kernel_pid} on {target}")
            if directory:
                done.append(f"removed {directory} on {target}")
    cancelled = _cancel(record, config)
    if cancelled:
        done.append(cancelled)
    return done


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be cleaned, change nothing.")
def gc(dry_run: bool) -> None:
    """End kernels and jobs that nothing can reconnect to any more (their launcher is gone and their window is
    over, or they have no holder), on every host, and say what was done. Detached kernels still in their window
    are kept: `rik stop` ends one of those."""
    failures = 0
    cleaned = 0
    would = 0
    for record in load_all():
        status = status_of(record)
        config = KernelConfig.from_json(record.config)
        if status in ("parked", "detached") and holder_alive(record, config) is False:
            status = "ended"  # its job ended (the scheduler, walltime): nothing is left to reconnect to
        if status not in ("orphaned", "ended"):
            continue
        if dry_run:
            would += 1
            click.echo(
                f"{record.name}: would end kernel {record.kernel_pid or '?'} on {_where(record)}"
                + (f" and cancel job {record.job_id}" if record.job_id else "")
            )
            continue
        try:
            done = _clean_local(record) if _on_this_machine(config) else _clean_remote(record, config)
        except (RikError, OSError, subprocess.TimeoutExpired) as exc:
            failures += 1
            click.echo(f"{record.name}: could not clean up: {exc}", err=True)
            continue
        record.remove()
        cleaned += 1
        click.echo(f"{record.name}: " + (", ".join(done) if done else "nothing was left; forgot it"))
    if dry_run and not would:
        click.echo("Nothing to clean up: every rik kernel is attached or still in its window.")
    if not dry_run and not cleaned and not failures:
        click.echo("Nothing to clean up: every rik kernel is attached or still in its window.")
    if failures:
        raise RikError(f"{failures} kernel(s) could not be cleaned up (see above); try again when the hosts answer")
