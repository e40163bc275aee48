"""rik-sge end to end against rik.testing's scripted fake ``qlogin``: a real kernel in the job's terminal."""

from __future__ import annotations

import pytest
from kernels import pid_alive, wait_until
from rik.testing import Exit, Print, Shell, Wait, add_kernel, python_kernel_cmd, running_kernel


def test_a_kernel_in_a_fake_qlogin_job(rik_jupyter, fake_scheduler) -> None:
    fake = fake_scheduler(
        "qlogin",
        [
            Print('Your job {job_id} ("rik") has been submitted\n'),
            Print("waiting for interactive job to be scheduled ...\n"),
            Wait(0.3),
            Print("Your interactive job {job_id} has been successfully scheduled.\n"),
            Print("Establishing builtin session to host {hostname} ...\n"),
            Shell(prompt="{user}@{hostname}:~$ ", env={"JOB_ID": "{job_id}"}),
        ],
        cancel="qdel",
    )
    name = add_kernel("-i", "sge", "-k", python_kernel_cmd(), "--queue", "all.q", *fake.kernel_args())
    with running_kernel(name) as kernel:
        job, pid = kernel.run("import os; print(os.environ['JOB_ID'], os.getpid())").split()
        assert job == "1001"
    [argv] = fake.launches()
    assert argv[argv.index("-q") + 1] == "all.q"
    assert fake.cancels() == [["1001"]]
    assert fake.wait_until_ended()
    assert wait_until(lambda: not pid_alive(int(pid)), 10), "the kernel outlived its job"


def test_a_refused_qlogin_fails_the_start_with_its_reason(rik_jupyter, fake_scheduler, capfd) -> None:
    fake = fake_scheduler(
        "qlogin",
        [Print('Unable to run job: Job was rejected because job requests unknown queue "nope".\nExiting.\n'), Exit(1)],
        cancel="qdel",
    )
    name = add_kernel("-i", "sge", "-k", python_kernel_cmd(), "--queue", "nope", *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert 'unknown queue "nope"' in capfd.readouterr().err
    assert fake.running() == [] and fake.cancels() == []
