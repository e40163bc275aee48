"""Kernels in interactive jobs: real SLURM 22.05, Grid Engine 8.1.9 and OpenPBS 23.06 (tests/cluster/pbs.sh; more of
it in test_pbs.py); LSF through its test emulator (tests/cluster/emulators: no LSF-compatible server can be obtained
here). Submit host rik-front, behind rik-gw."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import add_kernel, assert_nothing_left
from kernels import started, wait_until

COMPUTE = ("rik-c1", "rik-c2")


@dataclass(frozen=True)
class Sched:
    interface: str
    extra: tuple[str, ...]  # rik manage options
    cpus_env: str | None  # where the job shows the CPUs it got (None: qlogin's login shell has no NSLOTS)
    job_env: str | None  # the job id inside the job, where the scheduler sets it
    queue_cmd: tuple[str, ...]  # lists the user's jobs on the submit host

    def launch_cmd(self, cluster) -> tuple[str, ...]:
        if self.interface == "pbs":  # by full path: Debian's Grid Engine owns /usr/bin/qsub
            pbs = cluster.section("pbs") or {}
            if "qsub" not in pbs:
                message = f"no OpenPBS server in the test cluster: {pbs.get('missing', 'no pbs section')}"
                if os.environ.get("CI") == "true":
                    pytest.fail(message, pytrace=False)
                pytest.skip(message)
            return ("--launch-cmd", pbs["qsub"])
        if self.interface == "lsf":
            return ("--launch-cmd", cluster.section("lsf")["bsub"])
        return ()


SCHEDULERS = [
    Sched("slurm", ("--cpus", "2"), "SLURM_CPUS_PER_TASK", "SLURM_JOB_ID", ("squeue", "-h", "-u", "rik", "-o", "%i %T %j")),
    Sched("sge", ("--pe", "smp", "--cpus", "2"), None, None, ("qstat", "-u", "rik")),
    Sched("sge_qrsh", ("--pe", "smp", "--cpus", "2"), "NSLOTS", "JOB_ID", ("qstat", "-u", "rik")),
    Sched("pbs", ("--cpus", "2"), "NCPUS", "PBS_JOBID", ("/opt/pbs/bin/qstat",)),
    Sched("lsf", ("--cpus", "2"), "LSB_DJOB_NUMPROC", "LSB_JOBID", ("/opt/rik-emulators/lsf/bin/bjobs", "-noheader")),
]


def queue(cluster, sched: Sched, name: str) -> str:
    """The lines of the test user's jobs named ``name`` (other tests may share the user)."""
    out = cluster.run("rik-front", list(sched.queue_cmd), user="rik", timeout=30).stdout
    return "\n".join(line for line in out.splitlines() if name[:10] in line)


@pytest.mark.parametrize("sched", SCHEDULERS, ids=[s.interface for s in SCHEDULERS])
def test_kernel_in_a_job_on_a_compute_node(rik, cluster, jupyter_home: Path, sched: Sched) -> None:
    import uuid

    jn = f"t{uuid.uuid4().hex[:8]}"
    name = add_kernel(rik, cluster, "-i", sched.interface, "-x", "rik-front", "-t", "rik-gw", "-n", "Job",
                      "--job-name", jn, *sched.extra, *sched.launch_cmd(cluster))
    # The test user's shell history starts empty (bash drops a line equal to the one before it).
    cluster.run("rik-front", ["rm", "-f", ".bash_history"], user="rik", check=True)
    with started(name) as k:
        info = json.loads(k.run(
            "import json, os, socket; print(json.dumps({'host': socket.gethostname(), 'env': dict(os.environ)}))"
        ))
        assert info["host"] in COMPUTE
        # An interactive job's shell saves its history when it execs: what rik types into it is not the user's.
        assert "RIK-START" not in _history(cluster), _history(cluster)
        listed = queue(cluster, sched, jn)
        if sched.cpus_env:
            assert info["env"].get(sched.cpus_env) == "2", sorted(info["env"])
        else:  # the scheduler's own account of the job: its slots column
            jobs = [line.split() for line in listed.splitlines() if " rik " in line]
            assert jobs and jobs[0][-1] == "2", listed
        if sched.job_env:
            job_id = info["env"][sched.job_env]
            assert job_id.split(".")[0] in listed, listed
        else:
            assert listed.strip(), "the job is not in the queue"
        k.run("x = 41")
        assert k.interrupt_sleep() == "KeyboardInterrupt"
        assert k.run("print(x + 1)").strip() == "42"
    # Shut down: the job leaves the queue within seconds and nothing of the kernel remains on any node.
    wait_until(lambda: not queue(cluster, sched, jn).strip(), 30, what=f"{sched.interface} job to leave the queue")
    assert_nothing_left(cluster, hosts=COMPUTE, timeout=20)


def _history(cluster) -> str:
    """The test user's shell history (one home on every host)."""
    return cluster.run("rik-front", ["sh", "-c", "cat ~/.bash_history 2>/dev/null; true"], user="rik", timeout=30).stdout


def _launch(jupyter_home: Path, name: str, tmp_path: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    argv = json.loads((jupyter_home / "data" / "kernels" / name / "kernel.json").read_text())["argv"]
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"key": "0" * 32, "signature_scheme": "hmac-sha256", "transport": "tcp", "ip": "127.0.0.1",
                                "shell_port": 51001, "iopub_port": 51002, "stdin_port": 51003, "control_port": 51004, "hb_port": 51005}))
    return subprocess.run([str(conn) if a == "{connection_file}" else a for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_slurm_queue_timeout_cancels_the_pending_job(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    fill = cluster.section("slurm")["fill_queue"]
    filler = cluster.run("rik-front", ["sbatch", "--parsable", *fill["filler"][1:]], user="rik2", timeout=30, check=True).stdout.strip()
    try:
        name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Wait",
                          "--queue", fill["partition"], "--queue-timeout", "6")
        begun = time.monotonic()
        result = _launch(jupyter_home, name, tmp_path)
        assert result.returncode != 0
        assert "--queue-timeout=6" in result.stderr and "queued" in result.stderr, result.stderr
        assert time.monotonic() - begun < 40
        wait_until(lambda: not cluster.run("rik-front", ["squeue", "-h", "-u", "rik"], user="rik").stdout.strip(), 20,
                   what="the pending job to be cancelled")
    finally:
        cluster.run("rik-front", ["scancel", filler], user="rik2", timeout=30)
    assert_nothing_left(cluster, hosts=COMPUTE)


def test_an_unknown_partition_fails_fast_with_slurms_own_message(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Bad", "--queue", "nosuch")
    begun = time.monotonic()
    result = _launch(jupyter_home, name, tmp_path)
    assert result.returncode != 0 and time.monotonic() - begun < 30
    errors = [line for line in result.stderr.splitlines() if "refused" in line]
    assert len(errors) == 1 and "invalid partition" in errors[0].lower(), result.stderr


def test_a_kernel_command_that_fails_ends_the_launcher_and_the_job_with_its_words(
    rik, cluster, jupyter_home: Path, tmp_path: Path
) -> None:
    # The kernel dies before it binds anything: no READY ever comes. The launcher must not wait for it (the job
    # would otherwise sit parked, pinged for ever), and the job must go.
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Dies",
                      kernel_cmd="/usr/bin/python3 -c 'import nosuchmodule' {connection_file}")
    result = _launch(jupyter_home, name, tmp_path)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "exited with status 1 before it was ready" in line]
    assert len(errors) == 1 and "nosuchmodule" in errors[0], result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.replace(errors[0], "")
    wait_until(lambda: not cluster.run("rik-front", ["squeue", "-h", "-u", "rik"], user="rik").stdout.strip(), 20,
               what="the job to end")
    assert_nothing_left(cluster, hosts=COMPUTE)


def test_a_missing_scheduler_command_says_so(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "lsf", "-x", "rik-front", "-t", "rik-gw", "-n", "NoLsf")
    result = _launch(jupyter_home, name, tmp_path)
    assert result.returncode != 0
    assert "bsub" in result.stderr and "not" in result.stderr, result.stderr


def test_shutting_down_a_kernel_whose_job_is_queued_cancels_the_job(rik, cluster, jupyter_home: Path) -> None:
    """jupyter_client kills a launcher that has not exited within 5 s of a shutdown: a queued job must be
    cancelled well before that."""
    import uuid

    from jupyter_client.manager import KernelManager

    fill = cluster.section("slurm")["fill_queue"]
    filler = cluster.run("rik-front", ["sbatch", "--parsable", *fill["filler"][1:]], user="rik2", timeout=30, check=True).stdout.strip()
    jn = f"t{uuid.uuid4().hex[:8]}"
    try:
        name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Queued",
                          "--queue", fill["partition"], "--job-name", jn)
        km = KernelManager(kernel_name=name)
        km.start_kernel()
        squeue = ["squeue", "-h", "-u", "rik", "-n", jn, "-o", "%i %T"]
        wait_until(lambda: "PENDING" in cluster.run("rik-front", squeue, user="rik").stdout, 30, what="the job to queue")
        km.shutdown_kernel()
        km.cleanup_resources()
        wait_until(lambda: not cluster.run("rik-front", squeue, user="rik").stdout.strip(), 10, what="the job to be cancelled")
    finally:
        cluster.run("rik-front", ["scancel", filler], user="rik2", timeout=30)
