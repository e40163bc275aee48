"""rik-slurm end to end against rik.testing's scripted fake ``srun``: a real kernel, no cluster.

The same path as on the real cluster (tests/integration) except that the job's shell runs on this machine: the
plugin's argv, the parser on ``srun``'s words, the bootstrap on the job's standard input, ``scancel`` at the end.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from kernels import pid_alive, wait_until
from rik.testing import Exit, Print, Shell, Wait, add_kernel, python_kernel_cmd, running_kernel

QUEUED = "srun: job {job_id} queued and waiting for resources\n"
ALLOCATED = "srun: job {job_id} has been allocated resources\n"
STARTED = "srun: launch/slurm: _task_start: Node {hostname}, 1 tasks started\n"


def fake_srun(fake_scheduler, *steps):
    return fake_scheduler("srun", steps, cancel="scancel", on_cancel="srun: Job step aborted\n")


def test_a_kernel_in_a_fake_srun_job(rik_jupyter, fake_scheduler) -> None:
    fake = fake_srun(
        fake_scheduler,
        Print(QUEUED, stderr=True),
        Wait(0.3),
        Print(ALLOCATED, stderr=True),
        Print(STARTED, stderr=True),
        Shell(env={"SLURM_JOB_ID": "{job_id}"}),
    )
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "--cpus", "2", "-n", "Fake", *fake.kernel_args())
    with running_kernel(name) as kernel:
        job, pid = kernel.run("import os; print(os.environ['SLURM_JOB_ID'], os.getpid())").split()
        assert job == "1001"
        assert kernel.run("print(6 * 7)") == "42\n"
    [argv] = fake.launches()
    assert argv[argv.index("--cpus-per-task") + 1] == "2" and argv[-2:] == ["/bin/sh", "-s"]
    assert fake.cancels() == [["1001"]]
    assert fake.wait_until_ended()
    assert wait_until(lambda: not pid_alive(int(pid)), 10), "the kernel outlived its job"


def test_a_refused_job_fails_the_start_with_slurms_reason(rik_jupyter, fake_scheduler, capfd) -> None:
    fake = fake_srun(
        fake_scheduler,
        Print("srun: error: Unable to allocate resources: Invalid partition name specified\n", stderr=True),
        Exit(1),
    )
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "--queue", "nope", *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert "Invalid partition name specified" in capfd.readouterr().err
    assert fake.running() == []


def test_a_job_that_never_starts_is_cancelled_at_the_queue_timeout(rik_jupyter, fake_scheduler, capfd) -> None:
    fake = fake_srun(fake_scheduler, Print(QUEUED, stderr=True), Wait(None), Shell())
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "--queue-timeout", "1", *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert "did not start within --queue-timeout=1 s" in capfd.readouterr().err
    assert fake.cancels() == [["1001"]]
    assert fake.wait_until_ended() and fake.jobs()["1001"].state == "cancelled"


def test_kill_9_of_the_launcher_ends_the_fake_job_and_its_kernel_when_its_window_runs_out(rik_jupyter, fake_scheduler) -> None:
    fake = fake_srun(fake_scheduler, Print(ALLOCATED, stderr=True), Shell(env={"SLURM_JOB_ID": "{job_id}"}))
    # The kernel outlives its launcher for --grace seconds of idleness (at least 6), then ends with its job.
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "--grace", "3", *fake.kernel_args())
    with running_kernel(name) as kernel:
        pid = int(kernel.run("import os; print(os.getpid())"))
        launcher = kernel.launcher_pid
        assert launcher
        os.kill(launcher, signal.SIGKILL)
        assert pid_alive(pid), "the kernel must outlive its launcher for its window"
        assert fake.wait_until_ended(timeout=40)
        assert wait_until(lambda: not pid_alive(pid), 10), "the kernel outlived its launcher"


def test_direct_transport_refuses_a_job_on_another_machine(rik_jupyter, fake_scheduler, tmp_path: Path, capfd) -> None:
    """``--transport direct`` tunnels nothing: a job that lands elsewhere must fail, and say so, not hang."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hostname").write_text("#!/bin/sh\necho node-elsewhere\n")
    (elsewhere / "hostname").chmod(0o755)
    fake = fake_srun(
        fake_scheduler,
        Print(ALLOCATED, stderr=True),
        Shell(env={"SLURM_JOB_ID": "{job_id}", "PATH": f"{elsewhere}:{os.environ['PATH']}"}),
    )
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert "the job runs on node-elsewhere, not on this machine" in capfd.readouterr().err
    assert fake.cancels() == [["1001"]]
    assert fake.wait_until_ended()
