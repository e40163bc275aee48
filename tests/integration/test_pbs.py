"""rik-pbs on a real PBS: OpenPBS 23.06 built from its release source by tests/cluster/pbs.sh (server, scheduler
and comm on rik-front, pbs_mom on rik-c1 and rik-c2). Kernels are started as the unprivileged test user through
rik-gw with ``qsub -I`` on rik-front, called by its full path (Debian's Grid Engine owns /usr/bin/qsub)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import add_kernel, assert_nothing_left
from jupyter_client.manager import KernelManager
from kernels import started, wait_until

COMPUTE = ("rik-c1", "rik-c2")
CHAIN = ("-x", "rik-front", "-t", "rik-gw")
#: A waiting ``qsub -I`` whose job was deleted asks the server every 30 s whether the job is still there, and only
#: then ends ("qsub: job ID apparently deleted"): the job goes at once, its client on the submit host within this.
QSUB_NOTICES = 45


@pytest.fixture
def pbs(cluster) -> Mapping[str, Any]:
    """The cluster's real PBS; skips (fails under CI=true) when tests/cluster/pbs.sh could not build one."""
    section = cluster.section("pbs")
    if not section or section.get("missing") or section.get("emulated", True):
        why = (section or {}).get("missing") or "no pbs section in cluster.json: rerun tests/cluster/up"
        message = f"no OpenPBS server in the test cluster: {why}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return section


def job_name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def jobs(cluster, pbs, name: str) -> list[str]:
    """Ids of the test user's jobs named ``name`` that PBS still has (queued, running or exiting)."""
    qselect = f"{pbs['bin_dir']}/qselect"
    out = cluster.run("rik-front", [qselect, "-u", "rik", "-N", name], user="rik", timeout=30).stdout
    return out.split()


def job_attrs(cluster, pbs, job_id: str) -> dict[str, str]:
    """``qstat -f ID`` as a dict (continuation lines joined); empty once PBS has forgotten the job."""
    out = cluster.run("rik-front", [pbs["qstat"], "-f", job_id], user="rik", timeout=30).stdout
    attrs: dict[str, str] = {}
    key = None
    for line in out.splitlines():
        if line.startswith("\t") and key:
            attrs[key] += line.strip()
        elif " = " in line:
            key, _, value = line.strip().partition(" = ")
            attrs[key] = value
    return attrs


def job_leftovers(cluster, jn: str) -> dict[str, list[str]]:
    """What is left of the kernel whose job is named ``jn``, told apart from other tests' kernels (which may run as
    the same user meanwhile): on the compute nodes every process of the job (PBS puts ``PBS_JOBNAME`` in their
    environment), on the submit host the job's client (``qsub -I … -N jn`` and the ``script`` holding it)."""
    found: dict[str, list[str]] = {}
    for host in ("rik-front", *COMPUTE):
        for p in cluster.processes(host):
            if p.user != "rik":
                continue
            try:
                env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PBS_JOBNAME={jn}".encode() in env or f"-N {jn}" in p.cmdline:
                found.setdefault(host, []).append(f"{p.pid} {p.cmdline}")
    return found


def assert_job_left_nothing(cluster, jn: str, timeout: float = 20) -> None:
    wait_until(lambda: not job_leftovers(cluster, jn), timeout, what=f"every process of job {jn} to end")
    # And the whole check (the test's baseline aside): a failure here while other tests share the test user
    # is worth one re-run before chasing it.
    assert_nothing_left(cluster, timeout=timeout)


def pbs_kernel(rik, cluster, pbs, jn: str, *args: str, label: str = "PBS") -> str:
    return add_kernel(
        rik, cluster, "-i", "pbs", *CHAIN, "-n", label, "--job-name", jn, "--launch-cmd", pbs["qsub"], *args
    )


def launch(jupyter_home: Path, name: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the kernelspec's launcher as Jupyter would, with a connection file; wait for it to end."""
    argv = json.loads((jupyter_home / "data" / "kernels" / name / "kernel.json").read_text())["argv"]
    conn = tmp_path / "conn.json"
    conn.write_text(
        json.dumps(
            {
                "key": "0" * 32,
                "signature_scheme": "hmac-sha256",
                "transport": "tcp",
                "ip": "127.0.0.1",
                "shell_port": 51101,
                "iopub_port": 51102,
                "stdin_port": 51103,
                "control_port": 51104,
                "hb_port": 51105,
            }
        )
    )
    return subprocess.run(
        [str(conn) if a == "{connection_file}" else a for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@contextmanager
def logged_kernel(name: str, log: Path) -> Iterator[KernelManager]:
    """A kernel started through jupyter_client whose launcher's log goes to ``log``."""
    km = KernelManager(kernel_name=name)
    with open(log, "wb") as fh:
        km.start_kernel(stderr=fh)
    try:
        yield km
    finally:
        if km.is_alive():
            km.shutdown_kernel(now=False)
        km.cleanup_resources()


@contextmanager
def node_filled(cluster, pbs) -> Iterator[str]:
    """rik-c2 busy: a batch job of the other test user holds all its CPUs (running) until the block ends."""
    fill = pbs["fill_node"]
    filler = cluster.run("rik-front", fill["filler"], user="rik2", timeout=30, check=True).stdout.strip()
    try:
        wait_until(lambda: job_attrs(cluster, pbs, filler).get("job_state") == "R", 30, what="the filler job to run")
        yield filler
    finally:
        cluster.run("rik-front", [pbs["qdel"], filler], user="rik2", timeout=30)


# ------------------------------------------------------------------ a kernel in a job
def test_kernel_in_a_pbs_job_sees_its_job_and_the_limits_the_user_typed(rik, cluster, pbs, jupyter_home: Path) -> None:
    jn = job_name()
    name = pbs_kernel(rik, cluster, pbs, jn, "--cpus", "2", "--walltime", "1:30:00", "--memory", "512M")
    with started(name) as k:
        info = json.loads(
            k.run("import json, os, socket; print(json.dumps({'host': socket.gethostname(), 'env': dict(os.environ)}))")
        )
        job_id = info["env"]["PBS_JOBID"]
        assert info["host"] in COMPUTE
        assert jobs(cluster, pbs, jn) == [job_id]
        assert job_id.endswith(".rik-front") and info["env"].get("NCPUS") == "2"
        attrs = job_attrs(cluster, pbs, job_id)
        # PBS's own account of the job: where it runs, and the limits exactly as typed.
        assert attrs["job_state"] == "R" and attrs["interactive"] == "True"
        assert attrs["exec_host"].split("/")[0] == info["host"]
        assert attrs["Resource_List.walltime"] == "01:30:00"
        assert attrs["Resource_List.ncpus"] == "2" and attrs["Resource_List.mem"] == "512mb"
        assert attrs["Job_Owner"].startswith("rik@") and attrs["Job_Name"] == jn
        k.run("x = 41")
        assert k.interrupt_sleep() == "KeyboardInterrupt"
        assert k.run("print(x + 1)").strip() == "42"
    # Shutdown: PBS forgets the job (qstat ID: Unknown Job Id) and nothing of the kernel is left on any host.
    wait_until(lambda: not jobs(cluster, pbs, jn), 30, what="the job to leave qstat")
    assert job_attrs(cluster, pbs, job_id) == {}
    assert_job_left_nothing(cluster, jn)


def test_restart_keeps_the_job(rik, cluster, pbs, jupyter_home: Path) -> None:
    jn = job_name()
    name = pbs_kernel(rik, cluster, pbs, jn, label="PBS restart")
    with started(name) as k:
        before = k.run("import os; x = 1; print(os.environ['PBS_JOBID'])").strip()
        k.restart()
        assert k.run("print('x' in globals())").strip() == "False"
        assert k.run("import os; print(os.environ['PBS_JOBID'])").strip() == before
        assert jobs(cluster, pbs, jn) == [before]
    wait_until(lambda: not jobs(cluster, pbs, jn), 30, what="the job to leave qstat")
    assert_job_left_nothing(cluster, jn)


def test_kill_9_of_the_launcher_ends_the_job(rik, cluster, pbs, jupyter_home: Path) -> None:
    jn = job_name()
    name = pbs_kernel(rik, cluster, pbs, jn, "--grace", "3", label="PBS kill")
    with started(name) as k:
        assert k.run("import socket; print(socket.gethostname())").strip() in COMPUTE
        assert jobs(cluster, pbs, jn)
        os.kill(k.launcher_pid(), signal.SIGKILL)
        wait_until(lambda: not jobs(cluster, pbs, jn), 60, what="the job to leave qstat")
        assert_job_left_nothing(cluster, jn, timeout=30)
    rik("gc", check=True)
    assert_nothing_left(cluster, timeout=5)


def test_kill_9_of_the_launcher_while_the_job_waits_then_rik_gc_deletes_it(
    rik, cluster, pbs, jupyter_home: Path
) -> None:
    """A waiting ``qsub -I`` whose launcher is gone keeps its job queued (PBS would run it later with no one
    attached): ``rik ps`` shows the kernel, ``rik gc`` deletes the job and ends its client."""
    jn = job_name()
    never = " ".join(pbs["never_starts_args"])
    name = pbs_kernel(rik, cluster, pbs, jn, "--remote-launch-args", never, "--grace", "3", label="PBS kill queued")
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    try:
        wait_until(lambda: jobs(cluster, pbs, jn), 60, what="the job to queue")
        [job_id] = jobs(cluster, pbs, jn)
        os.kill(km.provisioner.process.pid, signal.SIGKILL)
        km.provisioner.process.wait()
        listed = rik("ps", check=True).out
        assert job_id in listed, listed
        # Once its --grace window is over, `rik gc` ends it (before that it reports nothing to clean up).
        wait_until(lambda: f"cancelled job {job_id}" in rik("gc", check=True).out, 30, interval=1, what="rik gc")
    finally:
        km.cleanup_resources()
    wait_until(lambda: not jobs(cluster, pbs, jn), 15, what="the job to be deleted")
    assert_job_left_nothing(cluster, jn, timeout=QSUB_NOTICES)


# ------------------------------------------------------------------ waiting in the queue
def test_a_job_waiting_for_a_busy_node_starts_when_the_node_is_free(
    rik, cluster, pbs, jupyter_home: Path, tmp_path: Path
) -> None:
    jn = job_name()
    waiter = " ".join(pbs["fill_node"]["waiter_args"])
    name = pbs_kernel(rik, cluster, pbs, jn, "--remote-launch-args", waiter, label="PBS wait")
    log = tmp_path / "launcher.log"
    with node_filled(cluster, pbs) as filler, logged_kernel(name, log) as km:
        queued = wait_until(
            lambda: re.search(r"job (\S+) queued", log.read_text()), 60, what="the launcher to say the job is queued"
        )
        job_id = queued.group(1)
        assert jobs(cluster, pbs, jn) == [job_id], log.read_text()
        assert job_attrs(cluster, pbs, job_id)["job_state"] == "Q"
        cluster.run("rik-front", [pbs["qdel"], filler], user="rik2", timeout=30, check=True)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive(
                "import os, socket; print(socket.gethostname(), os.environ['PBS_JOBID'])", timeout=60
            )
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        assert job_attrs(cluster, pbs, job_id)["exec_host"].startswith("rik-c2/")
    text = log.read_text()
    # The log shows the wait, then the start on the node that was busy.
    queued_at, started_at = text.find(f"job {job_id} queued"), text.find("kernel starting on rik-c2")
    assert 0 <= queued_at < started_at, text
    wait_until(lambda: not jobs(cluster, pbs, jn), 30, what="the job to leave qstat")
    assert_job_left_nothing(cluster, jn)


def test_queue_timeout_deletes_a_job_that_can_never_start(
    rik, cluster, pbs, jupyter_home: Path, tmp_path: Path
) -> None:
    jn = job_name()
    never = " ".join(pbs["never_starts_args"])
    name = pbs_kernel(rik, cluster, pbs, jn, "--remote-launch-args", never, "--queue-timeout", "6", label="PBS never")
    result = launch(jupyter_home, name, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "--queue-timeout=6" in result.stderr, result.stderr
    assert "cancelling job" in result.stderr and ".rik-front" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # Deleted, not left queued for a later run with no one attached (what a killed qsub -I leaves).
    wait_until(lambda: not jobs(cluster, pbs, jn), 15, what="the job to be deleted")
    assert_job_left_nothing(cluster, jn, timeout=QSUB_NOTICES)


def test_shutting_down_a_kernel_whose_job_waits_deletes_the_job(
    rik, cluster, pbs, jupyter_home: Path, tmp_path: Path
) -> None:
    """A waiting ``qsub -I`` that is hung up (or killed) leaves its job queued in PBS: rik deletes the job it saw,
    before jupyter_client's 5 s patience with a stopping launcher runs out."""
    jn = job_name()
    never = " ".join(pbs["never_starts_args"])
    name = pbs_kernel(rik, cluster, pbs, jn, "--remote-launch-args", never, label="PBS queued")
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    try:
        wait_until(lambda: jobs(cluster, pbs, jn), 60, what="the job to queue")
    finally:
        km.shutdown_kernel()
        km.cleanup_resources()
    wait_until(lambda: not jobs(cluster, pbs, jn), 10, what="the job to be deleted")
    assert_job_left_nothing(cluster, jn, timeout=QSUB_NOTICES)


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--queue", "nosuch"), "qsub: Unknown queue"),
        (("--remote-launch-args", "-l nosuchresource=1"), "qsub: Unknown resource"),
    ],
    ids=["queue", "resource"],
)
def test_pbs_refusal_is_one_clear_line_and_leaves_nothing(
    rik, cluster, pbs, jupyter_home: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    jn = job_name()
    name = pbs_kernel(rik, cluster, pbs, jn, *args, label="PBS bad")
    result = launch(jupyter_home, name, tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "refused" in line]
    assert len(errors) == 1 and said in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not jobs(cluster, pbs, jn)
    assert_job_left_nothing(cluster, jn)


# ------------------------------------------------------------------ the walltime
def test_pbs_ending_the_job_at_its_walltime_is_reported_with_pbs_reason(
    rik, cluster, pbs, jupyter_home: Path, tmp_path: Path
) -> None:
    jn = job_name()
    name = pbs_kernel(rik, cluster, pbs, jn, "--walltime", "0:00:20", label="PBS walltime")
    log = tmp_path / "launcher.log"
    with logged_kernel(name, log) as km:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            [job_id] = jobs(cluster, pbs, jn)
            assert job_attrs(cluster, pbs, job_id)["Resource_List.walltime"] == "00:00:20"
            wait_until(
                lambda: km.provisioner.process.poll() is not None,
                120,
                interval=1,
                what="PBS to end the job at its walltime",
            )
        finally:
            kc.stop_channels()
    text = log.read_text()
    assert "reaches its time limit (0:00:20)" in text, text
    # PBS's own words, as the mom wrote them to the job's terminal.
    assert "the scheduler ended the job: =>> PBS: job killed: walltime" in text and "exceeded limit 20" in text, text
    wait_until(lambda: not jobs(cluster, pbs, jn), 30, what="the job to leave qstat")
    rik("gc", check=True)
    assert_job_left_nothing(cluster, jn)
