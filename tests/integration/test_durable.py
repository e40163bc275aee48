"""Durable kernels on the real test cluster: a kernel lives in its allocation, not in the laptop's connection.

Every host's sshd drops a client that stops answering after ~15 s (ClientAliveInterval 5, ClientAliveCountMax 3),
as many sites do. The submit host (rik-front) is reached through the gateway, so the scheduler's client (srun,
qrsh, qlogin, the LSF emulator's bsub) runs behind ssh, as on real clusters.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from helpers import add_kernel, assert_nothing_left
from jupyter_client.blocking.client import BlockingKernelClient
from kernels import started, wait_until
from rik.testing import KernelSession

CHAIN = ("-t", "rik-gw")


@dataclass(frozen=True)
class Kind:
    interface: str
    args: tuple[str, ...]
    job_env: str | None  # the job id inside the job
    queue_cmd: tuple[str, ...] | None  # the user's jobs, on the submit host

    def kernel(self, rik, cluster, label: str, *extra: str) -> tuple[str, str]:
        jn = f"d{uuid.uuid4().hex[:8]}"
        args = list(self.args)
        if self.interface == "lsf":
            args += ["--launch-cmd", cluster.section("lsf")["bsub"]]
        if self.interface == "pbs":  # by full path: Debian's Grid Engine owns /usr/bin/qsub
            pbs = cluster.section("pbs") or {}
            if "qsub" not in pbs:
                pytest.skip(f"no OpenPBS server in the test cluster ({pbs.get('missing', 'no pbs section')})")
            args += ["--launch-cmd", pbs["qsub"]]
        if self.queue_cmd:
            args += ["--job-name", jn]
        return add_kernel(rik, cluster, *args, "-n", f"{label} {self.interface}", *extra), jn

    def jobs(self, cluster, jn: str) -> list[str]:
        assert self.queue_cmd
        out = cluster.run("rik-front", list(self.queue_cmd), user="rik", timeout=30).stdout
        return [line for line in out.splitlines() if jn in line]


SSH = Kind("ssh", ("-i", "ssh", "-x", "rik-c1", *CHAIN, "rik-front"), None, None)
SLURM = Kind(
    "slurm", ("-i", "slurm", "-x", "rik-front", *CHAIN), "SLURM_JOB_ID", ("squeue", "-h", "-u", "rik", "-o", "%i %T %j")
)
QRSH = Kind("sge_qrsh", ("-i", "sge_qrsh", "-x", "rik-front", *CHAIN), "JOB_ID", ("qstat", "-u", "rik"))
QLOGIN = Kind("sge", ("-i", "sge", "-x", "rik-front", *CHAIN), None, ("qstat", "-u", "rik"))
LSF = Kind(
    "lsf",
    ("-i", "lsf", "-x", "rik-front", *CHAIN),
    "LSB_JOBID",
    ("/opt/rik-emulators/lsf/bin/bjobs", "-noheader", "-o", "jobid stat job_name"),
)
PBS = Kind("pbs", ("-i", "pbs", "-x", "rik-front", *CHAIN), "PBS_JOBID", ("/opt/pbs/bin/qstat",))
ALL = [SSH, SLURM, QRSH, QLOGIN, PBS, LSF]
JOBS = [SLURM, QRSH, QLOGIN, PBS, LSF]


@pytest.fixture(autouse=True)
def _stop_what_the_test_left(rik, jupyter_home: Path):
    """A failed test must not leave a detached kernel alive for its window (an hour) to trouble the next ones."""
    yield
    for record in json.loads(rik("ps", "--json").out or "[]"):
        if record["status"] in ("detached", "parked", "attached", "reconnecting"):
            rik("stop", record["name"])


def _ids(kinds: list[Kind]) -> list[str]:
    return [k.interface for k in kinds]


def local_processes(launcher: int) -> list[psutil.Process]:
    """The kernel's local side: its launcher, everything the launcher started, and the ssh master connections
    (daemons of their own) that use this test's private runtime directory."""
    runtime = os.environ["RIK_RUNTIME_DIR"]
    found = {}
    try:
        root = psutil.Process(launcher)
        found[root.pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "ssh" and runtime in " ".join(proc.info["cmdline"] or ()):
            found[proc.pid] = proc
    return list(found.values())


def local_ssh(launcher: int) -> list[psutil.Process]:
    return [p for p in local_processes(launcher) if p.pid != launcher and _name(p) == "ssh"]


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return ""


def job_id_of(k, kind: Kind) -> str:
    if kind.job_env:
        return k.run(f"import os; print(os.environ['{kind.job_env}'])").strip()
    # qlogin's login shell has no JOB_ID: the job is the one whose shell is the kernel's ancestor.
    return k.run("import os; print(os.getppid())").strip()


# -------------------------------------------------------------------------------------------------------------
# The network changes, the laptop sleeps
# -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL, ids=_ids(ALL))
def test_the_kernel_answers_after_every_local_ssh_process_is_killed(rik, cluster, jupyter_home: Path, kind: Kind) -> None:
    name, jn = kind.kernel(rik, cluster, "Net")
    with started(name) as k:
        before = job_id_of(k, kind) if kind.job_env else None
        k.run("x = 41")
        launcher = k.launcher_pid()
        assert launcher
        killed = local_ssh(launcher)
        assert killed, "no local ssh process to kill"
        for proc in killed:
            proc.kill()
        # The network is back at once: the launcher reconnects the chain, its session and the tunnel.
        assert k.run("print(x + 1)", timeout=15).strip() == "42"
        if before:
            assert job_id_of(k, kind) == before
    if kind.queue_cmd:
        wait_until(lambda: not kind.jobs(cluster, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, timeout=45 if kind is PBS else 20)  # PBS's qsub -I takes its time to notice


@pytest.mark.parametrize("kind", [SSH, SLURM], ids=_ids([SSH, SLURM]))
def test_the_kernel_answers_after_the_laptop_slept_longer_than_sshd_waits(rik, cluster, jupyter_home: Path, kind: Kind) -> None:
    name, jn = kind.kernel(rik, cluster, "Sleep")
    with started(name) as k:
        k.run("x = 41")
        launcher = k.launcher_pid()
        assert launcher
        frozen = local_processes(launcher)
        assert any(_name(p) == "ssh" for p in frozen)
        for proc in frozen:
            proc.suspend()
        try:
            time.sleep(25)  # every host's sshd gives up on a silent client after ~15 s
        finally:
            for proc in frozen:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.resume()
        assert k.run("print(x + 1)", timeout=15).strip() == "42"
    if kind.queue_cmd:
        wait_until(lambda: not kind.jobs(cluster, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, timeout=20)


# -------------------------------------------------------------------------------------------------------------
# Restart in place
# -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", JOBS, ids=_ids(JOBS))
def test_a_restart_starts_the_new_kernel_in_the_same_job(rik, cluster, jupyter_home: Path, kind: Kind) -> None:
    name, jn = kind.kernel(rik, cluster, "Restart")
    with started(name) as k:
        before = job_id_of(k, kind) if kind.job_env else None
        pid_before = k.run("import os; print(os.getpid())").strip()
        k.run("x = 41")
        listed = kind.jobs(cluster, jn)
        assert len(listed) == 1, listed
        k.restart()
        assert k.run("print('x' in globals())").strip() == "False"
        assert k.run("import os; print(os.getpid())").strip() != pid_before
        if before:
            assert job_id_of(k, kind) == before
        # The same job, never a second one (compared by id: other columns, such as time used, move on).
        assert [line.split()[0] for line in kind.jobs(cluster, jn)] == [line.split()[0] for line in listed]
        assert k.run("print(6 * 7)").strip() == "42"
    wait_until(lambda: not kind.jobs(cluster, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, timeout=45 if kind is PBS else 20)


# -------------------------------------------------------------------------------------------------------------
# Reattach after the local side is gone; rik ps, rik attach, rik stop
# -------------------------------------------------------------------------------------------------------------


def _ps(rik) -> dict[str, dict]:
    rows = json.loads(rik("ps", "--json", check=True).out)
    return {row["name"]: row for row in rows}


def _attach(name: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rik", "attach", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("Connection file: "), line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split(": ", 1)[1].strip()


def _client(path: str) -> BlockingKernelClient:
    kc = BlockingKernelClient(connection_file=path)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


@pytest.mark.parametrize("kind", [SSH, SLURM], ids=_ids([SSH, SLURM]))
def test_a_killed_launcher_leaves_a_detached_kernel_that_rik_attach_brings_back(rik, cluster, jupyter_home: Path, kind: Kind) -> None:
    name, jn = kind.kernel(rik, cluster, "Attach", "--grace", "3600")  # rik's default window: an hour
    with started(name) as k:
        k.run("x = 41")
        launcher = k.launcher_pid()
        assert launcher
        record = next(r for r in _ps(rik).values() if r["launcher_pid"] == launcher)
        os.kill(launcher, signal.SIGKILL)
        k.km.provisioner.process.wait(10)  # type: ignore[union-attr]
        row = _ps(rik)[record["name"]]
        assert row["status"] == "detached", row
        assert row["ends_at"] and row["ends_at"] > time.time() + 600  # the default window: an hour
        k.km.provisioner = None  # this frontend is gone; the kernel is not
    attach, path = _attach(record["name"])
    try:
        kc = _client(path)
        try:
            assert KernelSession(None, kc).run("print(x + 1)", 30).strip() == "42"
        finally:
            kc.stop_channels()
        assert _ps(rik)[record["name"]]["status"] == "attached"
        attach.send_signal(signal.SIGINT)  # Ctrl-C: detach again
        assert attach.wait(30) == 0
    finally:
        if attach.poll() is None:
            attach.kill()
        attach.communicate()
    assert _ps(rik)[record["name"]]["status"] == "detached"
    stopped = rik("stop", record["name"])
    assert stopped.code == 0 and stopped.out.startswith(f"Stopped {record['name']}"), stopped
    assert record["name"] not in _ps(rik)
    if kind.queue_cmd:
        wait_until(lambda: not kind.jobs(cluster, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, timeout=20)
    again = rik("stop", record["name"])
    assert again.code == 1 and again.err.strip() == f"rik: error: no rik kernel named {record['name']!r} (`rik ps` lists them)"


def test_a_detached_kernel_ends_with_its_job_when_its_window_runs_out(rik, cluster, jupyter_home: Path) -> None:
    name, jn = SLURM.kernel(rik, cluster, "Window", "--grace", "6")
    with started(name) as k:
        k.run("x = 41")
        launcher = k.launcher_pid()
        assert launcher
        os.kill(launcher, signal.SIGKILL)
        k.km.provisioner.process.wait(10)  # type: ignore[union-attr]
        assert SLURM.jobs(cluster, jn)  # still there: the window has just begun
        k.km.provisioner = None
    wait_until(lambda: not SLURM.jobs(cluster, jn), 40, what="the job to end when its window ran out")
    assert_nothing_left(cluster, timeout=20)
    gc = rik("gc")
    assert gc.code == 0 and "cancelled job" not in gc.out


def test_attach_and_stop_of_unknown_or_ended_kernels_say_so_and_change_nothing(rik, cluster, jupyter_home: Path) -> None:
    for command in ("attach", "stop"):
        result = rik(command, "no-such-kernel")
        assert (result.code, result.out) == (1, "")
        assert result.err.strip() == "rik: error: no rik kernel named 'no-such-kernel' (`rik ps` lists them)"
    # A kernel whose job the scheduler ended while it was detached: its holder is gone.
    name, jn = SLURM.kernel(rik, cluster, "Gone")
    with started(name) as k:
        launcher = k.launcher_pid()
        assert launcher
        record = next(r for r in _ps(rik).values() if r["launcher_pid"] == launcher)
        os.kill(launcher, signal.SIGKILL)
        k.km.provisioner.process.wait(10)  # type: ignore[union-attr]
        k.km.provisioner = None
    [job] = [line.split()[0] for line in SLURM.jobs(cluster, jn)]
    cluster.run("rik-front", ["scancel", job], user="rik", timeout=30)
    wait_until(lambda: not SLURM.jobs(cluster, jn), 30, what="the job to leave the queue")
    wait_until(lambda: _holder_gone(record), 30, what="the holder to notice")
    before = _ps(rik)[record["name"]]
    result = rik("stop", record["name"])
    assert result.code == 1 and result.err.strip().startswith(f"rik: error: {record['name']} has already ended"), result
    assert _ps(rik)[record["name"]]["job_id"] == before["job_id"]  # nothing changed
    assert rik("gc").code == 0
    assert record["name"] not in _ps(rik)
    assert_nothing_left(cluster, timeout=20)


def _holder_gone(record: dict) -> bool:
    state = Path(os.environ["JUPYTER_RUNTIME_DIR"]) / "rik" / f"{record['name']}.json"
    hold_dir = json.loads(state.read_text())["hold_dir"]
    return not os.path.exists(hold_dir)


def test_the_notebook_gets_its_kernel_back_after_the_jupyter_server_is_killed(rik, cluster, jupyter_home: Path) -> None:
    """jupyter_server names each kernel's notebook (JPY_SESSION_NAME); with the rik provisioner, the notebook opened
    again after a server restart gets its detached kernel back, state and job included, instead of a new job."""
    from jupyter_client.manager import KernelManager

    name, jn = SLURM.kernel(rik, cluster, "Server", "--provisioner")
    env = {**os.environ, "JPY_SESSION_NAME": f"/home/rik/analysis-{jn}.ipynb"}
    km = KernelManager(kernel_name=name)
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        session = KernelSession(km, kc)
        job = session.run("import os; print(os.environ['SLURM_JOB_ID'])").strip()
        session.run("x = 41")
        os.kill(km.provisioner.process.pid, signal.SIGKILL)  # the server dies with its kernel managers
        km.provisioner.process.wait(10)
    finally:
        kc.stop_channels()
        km.cleanup_resources()  # this manager's sockets and context (the kernel itself lives on, detached)
    row = next(r for r in _ps(rik).values() if r["notebook"] == env["JPY_SESSION_NAME"])
    assert row["status"] == "detached"
    # A new server: a new kernel manager, new ports and key, the same notebook.
    again = KernelManager(kernel_name=name)
    again.start_kernel(env=env)
    kc2 = again.client()
    kc2.start_channels()
    try:
        kc2.wait_for_ready(timeout=120)
        session = KernelSession(again, kc2)
        assert session.run("print(x + 1)").strip() == "42"
        assert session.run("import os; print(os.environ['SLURM_JOB_ID'])").strip() == job
        assert len(SLURM.jobs(cluster, jn)) == 1
    finally:
        kc2.stop_channels()
        again.shutdown_kernel(now=False)
        again.cleanup_resources()
    wait_until(lambda: not SLURM.jobs(cluster, jn), 30, what="the job to leave the queue")
    assert_nothing_left(cluster, timeout=20)
