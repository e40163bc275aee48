"""A kernel's job as the launcher knows it: where it runs, how to reach and cancel it, and the records of kernels
an earlier launcher left (a restart finds its job there, ``rik attach`` and the provisioner their kernel)."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Endpoint, parse_endpoint
from ..errors import RikError
from ..models import Allocation, LaunchRequest
from ..plugins import PluginHost
from ..ssh import SSHTransport
from ..state import KernelState, state_dir
from .logs import log
from .proc import child_setup

__all__ = ["Where", "cancel_job", "find_adoptable", "find_session", "kernel_route"]


@dataclass
class Where:
    """Where things are, learnt along the way."""

    allocation: Allocation = field(default_factory=Allocation)
    node: str | None = None
    job_id: str | None = None
    remote_dir: str | None = None
    endpoints: dict[str, str] | None = None
    ready: bool = False
    kernel_exit: int | None = None  # RIK-EXIT: the kernel ended (the job may wait for a restart)
    end_status: int | None = None  # RIK-END: the bootstrap ended, and the job with it
    error: str | None = None


def kernel_route(
    has_job: bool, submit: Endpoint | None, chain: tuple[Endpoint, ...], node: str | None
) -> tuple[Endpoint, tuple[Endpoint, ...]]:
    """The host the kernel runs on, and the hops before it: the host itself for plain SSH; for a job, its node
    reached through the chain and the submit host."""
    if not has_job:
        assert submit is not None
        return submit, chain
    target = parse_endpoint(node or "", "node")
    hops = chain + ((submit,) if submit else ())
    if submit and target.host == submit.host:
        return submit, chain
    return target, hops


def cancel_job(
    plugins: PluginHost,
    request: LaunchRequest,
    ssh: SSHTransport | None,
    submit: Endpoint | None,
    chain: tuple[Endpoint, ...],
    job_id: str,
    node: str | None,
) -> bool:
    """Run the plugin's cancel command for ``job_id`` on the submit host; False when it could not be run."""
    try:
        argv = plugins.build_cancel_command(request, Allocation(job_id=job_id, node=node))
    except RikError as exc:
        log.error("%s", exc)
        return False
    if not argv:
        return True
    full = ssh.command(submit, chain, argv) if submit is not None and ssh is not None else list(argv)
    log.info("cancelling job %s: %s", job_id, shlex.join(argv))
    try:
        result = subprocess.run(
            full,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            env=ssh.env() if ssh else None,
            preexec_fn=child_setup,
        )
        out = (result.stdout + result.stderr).strip()
        if out:
            log.debug("cancel: %s", out)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("could not cancel job %s: %s", job_id, exc)
        return False
    if result.returncode == 255 and submit is not None:  # ssh itself failed: the submit host was not reached
        log.error("could not cancel job %s: %s", job_id, out.splitlines()[-1] if out else "no answer")
        return False
    return True


def find_adoptable(connection_file: str, key: str) -> KernelState | None:
    """The record of an earlier launcher for this very connection file and key (a restart), whose launcher is
    gone and whose holder is known: its job can take the new kernel."""
    from ..state import load

    record = load(state_dir() / f"{Path(connection_file).stem}.json")
    if record is None or not record.hold_dir or record.launcher_pid == os.getpid():
        return None
    if record.launcher_alive() or record.key() != key or not key:
        return None
    return record


def find_session(session_name: str, key: str) -> KernelState | None:
    """A detached kernel of the notebook ``session_name`` with this key (the provisioner reattaching)."""
    from ..state import load_all

    for record in load_all():
        mine = record.session_name == session_name and record.hold_dir and record.status != "parked"
        if mine and key and not record.launcher_alive() and record.key() == key:
            return record
    return None
