"""rik.testing's scripted fake scheduler, on its own: the programs it writes, run as rik runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pexpect
import pytest
from kernels import pid_alive, wait_until
from rik.testing import Exit, FakeScheduler, Print, Shell, Wait


def test_prints_its_script_and_exits_with_its_status(fake_scheduler) -> None:
    fake = fake_scheduler(
        "qsub",
        [Print("qsub: job {job_id}.front on {hostname}\n"), Print("qsub: refused\n", stderr=True), Exit(3)],
        cancel="qdel",
    )
    done = subprocess.run([fake.launch_cmd, "-I", "-N", "rik"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    assert done.stdout == f"qsub: job 1001.front on {socket.gethostname()}\n"
    assert done.stderr == "qsub: refused\n"
    again = subprocess.run([fake.launch_cmd], capture_output=True, text=True, timeout=30)
    assert again.stdout.startswith("qsub: job 1002.front")
    assert fake.launches() == [["-I", "-N", "rik"], []]
    assert [(j.job_id, j.state, j.status) for j in fake.jobs().values()] == [
        ("1001", "exited", 3),
        ("1002", "exited", 3),
    ]
    assert fake.running() == [] and fake.cancels() == []


def test_a_queued_job_ends_when_cancelled(fake_scheduler) -> None:
    fake = fake_scheduler(
        "srun",
        [Print("srun: job {job_id} queued and waiting for resources\n"), Wait(None), Shell()],
        cancel="scancel",
        on_cancel="srun: Job has been cancelled\n",
    )
    with subprocess.Popen([fake.launch_cmd, "/bin/sh", "-s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as job:
        assert job.stdout is not None
        assert job.stdout.readline() == b"srun: job 1001 queued and waiting for resources\n"
        assert fake.running() == ["1001"]
        cancel = subprocess.run([str(fake.dir / "bin" / "scancel"), "1001"], capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr
        assert job.wait(10) == 128 + signal.SIGTERM
        assert job.stdout.read() == b"srun: Job has been cancelled\n"
    assert fake.cancels() == [["1001"]]
    assert fake.jobs()["1001"].state == "cancelled" and fake.running() == []


def test_a_cancelled_job_takes_everything_it_started_along(fake_scheduler, tmp_path: Path) -> None:
    fake = fake_scheduler("srun", [Shell(env={"SLURM_JOB_ID": "{job_id}"})], cancel="scancel", kill_wait=1.0)
    argv = [fake.launch_cmd, "/bin/sh", "-s"]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as job:
        assert job.stdin is not None and job.stdout is not None
        # A job that ignores SIGTERM, and a grandchild in a session of its own: both must go.
        job.stdin.write("echo job=$SLURM_JOB_ID\ntrap '' TERM\nsetsid sleep 300 & echo $!\nsleep 301 & echo $!\nwait\n")
        job.stdin.flush()
        assert job.stdout.readline() == "job=1001\n"
        pids = [int(job.stdout.readline()), int(job.stdout.readline())]
        assert all(pid_alive(p) for p in pids)
        subprocess.run([str(fake.dir / "bin" / "scancel"), "1001"], check=True)
        job.wait(10)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5), "the job's processes outlived it"
    assert fake.jobs()["1001"].state == "cancelled"


def test_a_terminal_job_gives_a_prompt_and_ends_on_hangup(fake_scheduler) -> None:
    fake = fake_scheduler("bsub", [Print("<<Starting on {hostname}>>\n"), Shell(prompt="{user}@{hostname}$ ")])
    child = pexpect.spawn(fake.launch_cmd, ["-Is", "/bin/sh"], encoding="utf-8", timeout=10)
    try:
        child.expect_exact(f"<<Starting on {socket.gethostname()}>>")
        child.expect_exact(f"@{socket.gethostname()}$ ")
        child.sendline("echo mark-$((6 * 7))")
        child.expect_exact("mark-42")
        assert fake.running() == ["1001"]
    finally:
        child.close(force=False)  # the terminal goes away, as when rik's launcher dies
    assert fake.wait_until_ended(10)
    assert fake.jobs()["1001"].state in ("cancelled", "exited")


def test_cancelling_an_unknown_job_fails_like_a_scheduler(fake_scheduler) -> None:
    fake = fake_scheduler("qsub", [Exit(0)], cancel="qdel")
    done = subprocess.run([str(fake.dir / "bin" / "qdel"), "77.front"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr == "qsub: no such job: 77.front\n"


def test_bad_scripts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one step"):
        FakeScheduler(tmp_path, "srun", [])
    with pytest.raises(ValueError, match="not a program name"):
        FakeScheduler(tmp_path, "bin/srun", [Exit(0)])
    with pytest.raises(TypeError):
        FakeScheduler(tmp_path, "srun", ["echo"])  # type: ignore[list-item]


def test_a_signal_to_the_launch_program_ends_its_job(fake_scheduler) -> None:
    """rik's launcher dying sends its job SIGTERM (or SIGHUP through the terminal): the job ends."""
    fake = fake_scheduler("srun", [Wait(None)])
    job = subprocess.Popen([fake.launch_cmd])
    assert wait_until(lambda: fake.running() == ["1001"], 10)
    os.kill(job.pid, signal.SIGTERM)
    assert job.wait(10) == 128 + signal.SIGTERM
    assert fake.jobs()["1001"].state == "cancelled"
