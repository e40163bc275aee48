"""Lifecycle on the real cluster: a killed launcher, restarts, a killed kernel, a gateway's sshd restarted, and
`rik ps` / `rik gc` against an orphaned kernel. Every test ends by proving nothing of the kernel remains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import add_kernel, assert_nothing_left
from jupyter_client.manager import KernelManager
from kernels import started, wait_until

COMPUTE = ("rik-c1", "rik-c2")
SLURM_QUEUE = ["squeue", "-h", "-u", "rik", "-o", "%i"]
SGE_QUEUE = ["qstat", "-u", "rik"]


def jobs(cluster, argv: list[str], name: str | None = None) -> list[str]:
    """The test user's jobs, only those named ``name`` when given (other tests may share the user)."""
    if name and argv[0] == "squeue":
        argv = [*argv, "-n", name]
    out = cluster.run("rik-front", argv, user="rik", timeout=30).stdout
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith(("job-ID", "---"))]
    return [line for line in lines if name is None or argv[0] == "squeue" or f" {name[:10]} " in line]


def job_name() -> str:
    import uuid

    return f"t{uuid.uuid4().hex[:8]}"


KINDS = {
    "ssh": (("-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front"), None),
    "slurm": (("-i", "slurm", "-x", "rik-front", "-t", "rik-gw"), SLURM_QUEUE),
    "sge": (("-i", "sge", "-x", "rik-front", "-t", "rik-gw"), SGE_QUEUE),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_kill_9_of_the_launcher_leaves_nothing_once_the_window_runs_out(rik, cluster, jupyter_home: Path, kind: str) -> None:
    args, queue = KINDS[kind]
    jn = job_name()
    extra = ("--job-name", jn) if queue else ()
    name = add_kernel(rik, cluster, *args, *extra, "-n", f"Kill {kind}", "--grace", "3")
    with started(name) as k:
        assert k.run("import socket; print(socket.gethostname())").strip() in ("rik-c1", "rik-c2")
        if queue:
            assert jobs(cluster, queue, jn)
        os.kill(k.launcher_pid(), signal.SIGKILL)
        if queue:
            wait_until(lambda: not jobs(cluster, queue, jn), 30, what=f"the {kind} job to leave the queue")
        assert_nothing_left(cluster, timeout=30)  # every process of the kernel ends with its window (6 s at least)
    # A scheduler that ends a job with SIGKILL leaves the kernel's (keyless) directory: `rik gc` removes it.
    rik("gc", check=True)
    assert_nothing_left(cluster, timeout=5)


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_restart_leaves_exactly_one_job(rik, cluster, jupyter_home: Path, kind: str) -> None:
    args, queue = KINDS[kind]
    assert queue is not None
    jn = job_name()
    name = add_kernel(rik, cluster, *args, "--job-name", jn, "-n", f"Restart {kind}")
    with started(name) as k:
        k.run("x = 1")
        k.restart()
        assert k.run("print('x' in globals())").strip() == "False"
        # The old job was cancelled at shutdown; the scheduler may take a moment to finish completing it.
        wait_until(lambda: len(jobs(cluster, queue, jn)) == 1, 15, what="exactly one job after the restart")
        k.restart()
        wait_until(lambda: len(jobs(cluster, queue, jn)) == 1, 15, what="exactly one job after the second restart")
        assert k.run("print(1 + 1)").strip() == "2"
    wait_until(lambda: not jobs(cluster, queue, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, hosts=COMPUTE, timeout=20)


def test_a_killed_kernel_ends_the_launcher_and_its_job_waits_for_a_restart_then_ends(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    jn = job_name()
    # A crashed kernel leaves its job parked for a restart in place (min(--grace, 60 s)); nobody restarts it here.
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Dies", "--job-name", jn, "--grace", "8")
    km = KernelManager(kernel_name=name)
    log = tmp_path / "launcher.log"
    with open(log, "wb") as fh:
        km.start_kernel(stderr=fh)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("import os, socket; print(os.getpid(), socket.gethostname())", timeout=30)
        assert reply["content"]["status"] == "ok"
        info = json.loads(subprocess.run([sys.executable, "-m", "rik", "ps", "--json"], capture_output=True, text=True, check=True).stdout)
        mine = [r for r in info if r["name"] == Path(km.connection_file).stem]
        assert len(mine) == 1 and mine[0]["status"] == "attached" and mine[0]["job_id"]
        node, pid = mine[0]["where"].split()[0], mine[0]["kernel_pid"]
        cluster.run(node, ["kill", "-9", str(pid)], timeout=30, check=True)
        wait_until(lambda: km.provisioner.process.poll() is not None, 20, what="the launcher to exit")
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        km.cleanup_resources()
    text = log.read_text()
    assert "the kernel exited (status" in text and "waits 8 s for a restart in place" in text, text
    parked = json.loads(subprocess.run([sys.executable, "-m", "rik", "ps", "--json"], capture_output=True, text=True, check=True).stdout)
    assert [r["status"] for r in parked if r["name"] == mine[0]["name"]] in (["parked"], ["ended"])
    wait_until(lambda: not jobs(cluster, SLURM_QUEUE, jn), 40, what="the parked job to end")
    assert_nothing_left(cluster, hosts=COMPUTE, timeout=20)


def test_restarting_the_gateways_sshd_does_not_lose_the_kernel(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c2", "-t", "rik-gw", "rik-front", "-n", "Gateway")
    with started(name) as k:
        k.run("x = 'kept'")
        old = cluster.sshd_pid("rik-gw")
        subprocess.run([str(Path(__file__).parents[1] / "cluster" / "hosts.sh"), "restart-sshd", "rik-gw"], check=True, timeout=60,
                       capture_output=True)
        assert cluster.sshd_pid("rik-gw") != old
        assert k.run("print(x)", timeout=60).strip() == "kept"
    assert_nothing_left(cluster)


def test_rik_ps_lists_a_detached_kernel_gc_keeps_it_in_its_window_and_stop_ends_it(rik, cluster, jupyter_home: Path) -> None:
    jn = job_name()
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Orphan", "--grace", "600", "--job-name", jn)
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        stem = Path(km.connection_file).stem
        os.kill(km.provisioner.process.pid, signal.SIGKILL)
        assert km.provisioner.process.wait(10) == -signal.SIGKILL  # gone (and reaped), as after a crash
        ps = rik("ps", check=True).out
        line = next(line for line in ps.splitlines() if line.startswith(stem))
        assert " detached " in line and " in 9m" in line, ps  # --grace 600: ends in about ten minutes
        assert jobs(cluster, SLURM_QUEUE, jn)  # the window is long: the job is still there
        gc = rik("gc", check=True).out
        assert gc.strip() == "Nothing to clean up: every rik kernel is attached or still in its window.", gc
        stopped = rik("stop", stem, check=True).out
        assert stopped.startswith(f"Stopped {stem}: ended the kernel, cancelled job "), stopped
        assert stem not in rik("ps", check=True).out
    finally:
        kc.stop_channels()
        km.cleanup_resources()
    wait_until(lambda: not jobs(cluster, SLURM_QUEUE, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, hosts=COMPUTE, timeout=20)


def test_walltime_is_announced_and_its_end_reported_with_the_schedulers_reason(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    jn = job_name()
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Walltime", "--walltime", "1", "--job-name", jn)
    km = KernelManager(kernel_name=name)
    log = tmp_path / "launcher.log"
    with open(log, "wb") as fh:
        km.start_kernel(stderr=fh)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        wait_until(lambda: km.provisioner.process.poll() is not None, 120, interval=1, what="the time limit to end the job")
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        km.cleanup_resources()
    text = log.read_text()
    assert "reaches its time limit (0:01:00)" in text, text  # `--walltime 1` is SLURM's 1 minute, stored as H:MM:SS
    assert "the scheduler ended the job" in text and "TIME LIMIT" in text, text
    wait_until(lambda: not jobs(cluster, SLURM_QUEUE, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, hosts=COMPUTE, timeout=20)
