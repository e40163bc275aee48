"""rik-lsf end to end against rik.testing's scripted fake ``bsub -Is``: a real kernel in the job's terminal."""

from __future__ import annotations

from kernels import pid_alive, wait_until
from rik.testing import Print, Shell, Wait, add_kernel, python_kernel_cmd, running_kernel


def test_a_kernel_in_a_fake_bsub_interactive_job(rik_jupyter, fake_scheduler) -> None:
    fake = fake_scheduler(
        "bsub",
        [
            Print("Job <{job_id}> is submitted to queue <short>.\n"),
            Print("<<Waiting for dispatch ...>>\n"),
            Wait(0.3),
            Print("<<Starting on {hostname}>>\n"),
            Shell(prompt="$ ", env={"LSB_JOBID": "{job_id}"}),
        ],
        cancel="bkill",
    )
    name = add_kernel("-i", "lsf", "-k", python_kernel_cmd(), "--queue", "short", *fake.kernel_args())
    with running_kernel(name) as kernel:
        job, pid = kernel.run("import os; print(os.environ['LSB_JOBID'], os.getpid())").split()
        assert job == "1001"
    [argv] = fake.launches()
    assert argv[:1] == ["-Is"] and argv[argv.index("-q") + 1] == "short"
    assert fake.cancels() == [["1001"]]
    assert fake.wait_until_ended()
    assert wait_until(lambda: not pid_alive(int(pid)), 10), "the kernel outlived its job"
