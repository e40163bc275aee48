"""A real kernel through rik-htcondor with no HTCondor pool at hand: rik.testing's scripted fake
``condor_submit -interactive`` replays the recorded transcript, then gives a shell on this machine.

Runs anywhere (no root, no ssh server): the plugin's argv, its parser on the transcript as it arrives, the wait for
the prompt, rik's bootstrap typed into the job's shell, a real ipykernel, and ``condor_rm`` when the kernel stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rik.testing import (
    Exit,
    Print,
    Shell,
    Wait,
    add_kernel,
    python_kernel_cmd,
    read_transcript,
    running_kernel,
)

DATA = Path(__file__).parent / "data"


def test_a_kernel_in_a_fake_interactive_job(rik_jupyter, fake_scheduler) -> None:
    recorded = read_transcript(DATA / "condor-submit-interactive.txt")
    before_prompt, prompt = recorded.rsplit("\n", 1)  # the shell of the fake job prints the prompt itself
    submitted, started = before_prompt.split("Welcome to", 1)
    fake = fake_scheduler(
        "condor_submit",
        [
            Print(submitted),
            Wait(0.5),  # idle in the queue
            Print("Welcome to" + started + "\n"),
            Shell(prompt=prompt, env={"_CONDOR_SLOT_NAME": "slot1_3@node7.example.org"}),
        ],
        cancel="condor_rm",
        first_job_id=4242,
    )
    name = add_kernel("-i", "htcondor", "-k", python_kernel_cmd(), "--cpus", "2", *fake.kernel_args())
    with running_kernel(name) as kernel:
        assert kernel.run("import os; print(os.environ['_CONDOR_SLOT_NAME'])") == "slot1_3@node7.example.org\n"
        assert kernel.run("print(6 * 7)") == "42\n"
    [argv] = fake.launches()
    assert argv[:1] == ["-interactive"] and "request_cpus = 2" in argv
    assert fake.cancels() == [["4242"]]  # condor_rm, next to the fake condor_submit
    assert fake.wait_until_ended()


def test_a_held_job_fails_the_start_and_is_removed(rik_jupyter, fake_scheduler, capfd) -> None:
    fake = fake_scheduler(
        "condor_submit",
        [Print(read_transcript(DATA / "condor-submit-interactive-held.txt")), Wait(None)],
        cancel="condor_rm",
        first_job_id=4243,
    )
    name = add_kernel("-i", "htcondor", "-k", python_kernel_cmd(), *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert "Job is held" in capfd.readouterr().err
    assert fake.cancels() == [["4243"]]
    assert fake.wait_until_ended()


def test_a_pool_that_refuses_fails_the_start(rik_jupyter, fake_scheduler, capfd) -> None:
    fake = fake_scheduler(
        "condor_submit", [Print(read_transcript(DATA / "condor-submit-no-schedd.txt")), Exit(1)], cancel="condor_rm"
    )
    name = add_kernel("-i", "htcondor", "-k", python_kernel_cmd(), *fake.kernel_args())
    with pytest.raises(RuntimeError), running_kernel(name, startup_timeout=30):
        pass
    assert "Failed to connect to local queue manager" in capfd.readouterr().err
    assert fake.cancels() == [] and fake.running() == []
