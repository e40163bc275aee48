"""rik-pbs end to end against rik.testing's scripted fake ``qsub -I``: a real kernel in the job's terminal."""

from __future__ import annotations

import os
import signal

from kernels import pid_alive, wait_until
from rik.testing import Print, Shell, Wait, add_kernel, python_kernel_cmd, running_kernel


def fake_qsub(fake_scheduler):
    return fake_scheduler(
        "qsub",
        [
            Print("qsub: waiting for job {job_id}.front to start\n"),
            Wait(0.3),
            Print("qsub: job {job_id}.front ready\n\n"),
            Shell(prompt="{user}@{hostname}:~$ ", env={"PBS_JOBID": "{job_id}.front"}),
        ],
        cancel="qdel",
    )


def test_a_kernel_in_a_fake_qsub_interactive_job(rik_jupyter, fake_scheduler) -> None:
    fake = fake_qsub(fake_scheduler)
    name = add_kernel("-i", "pbs", "-k", python_kernel_cmd(), "--cpus", "2", *fake.kernel_args())
    with running_kernel(name) as kernel:
        job, pid = kernel.run("import os; print(os.environ['PBS_JOBID'], os.getpid())").split()
        assert job == "1001.front"
    [argv] = fake.launches()
    assert argv[:1] == ["-I"] and "ncpus=2" in " ".join(argv)
    assert fake.cancels() == [["1001.front"]]
    assert fake.wait_until_ended()
    assert wait_until(lambda: not pid_alive(int(pid)), 10), "the kernel outlived its job"


def test_kill_9_of_the_launcher_ends_the_job_when_its_window_runs_out(rik_jupyter, fake_scheduler) -> None:
    fake = fake_qsub(fake_scheduler)
    name = add_kernel("-i", "pbs", "-k", python_kernel_cmd(), "--grace", "3", *fake.kernel_args())
    with running_kernel(name) as kernel:
        pid = int(kernel.run("import os; print(os.getpid())"))
        assert kernel.launcher_pid
        os.kill(kernel.launcher_pid, signal.SIGKILL)
        assert fake.wait_until_ended(timeout=40)
        assert wait_until(lambda: not pid_alive(pid), 10), "the kernel outlived its launcher"
