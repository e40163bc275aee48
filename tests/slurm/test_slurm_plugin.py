"""rik-slurm against the contract suite and transcripts recorded on the real SLURM 22.05 test cluster."""

from __future__ import annotations

from pathlib import Path

import rik_slurm.plugin
from rik import LaunchRequest, Resources
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestSlurmContract(SchedulerContract):
    plugin = rik_slurm.plugin
    interfaces = ("slurm",)
    transcripts = {
        str(T / "slurm-22.05-srun-pty-v.txt"): Expect(job_id="4", node="rik-c1", state="running"),
        str(T / "slurm-22.05-srun-stdin.txt"): Expect(job_id="10", node="rik-c1", state="running"),
        str(T / "slurm-22.05-srun-queued.txt"): Expect(job_id="6", node="rik-c2", state="running"),
        str(T / "slurm-22.05-srun-cancelled-running.txt"): Expect(job_id="9", node="rik-c1", state="running"),
        str(T / "slurm-22.05-srun-bad-partition.txt"): Expect(error="invalid partition"),
        str(T / "slurm-22.05-srun-cancelled-pending.txt"): Expect(job_id="8", error="cancelled"),
    }
    ended_lines = (
        # recorded: a running job cancelled (slurm-22.05-srun-cancelled-running*.txt)
        "slurmstepd-rik-c1: error: *** STEP 9.0 ON rik-c1 CANCELLED AT 2026-11-22T00:39:50 ***",
        "slurmstepd-rik-c2: error: *** STEP 15.0 ON rik-c2 CANCELLED AT 2026-11-22T00:20:10 ***",
        # slurmstepd's format for a time limit and a preemption
        "srun: error: *** STEP 12.0 ON rik-c2 CANCELLED AT 2026-11-30T12:00:00 DUE TO TIME LIMIT ***",
        "slurmstepd-rik-c2: error: *** JOB 12 ON rik-c2 CANCELLED AT 2026-11-30T12:00:00 DUE TO PREEMPTION ***",
    )


def test_resources_map_to_srun_flags() -> None:
    request = LaunchRequest(
        interface="slurm",
        resources=Resources(cpus=4, memory="8G", walltime="90", gpus=1, queue="gpu", account="proj"),
        job_name="nb",
        extra_args=("--constraint=avx2",),
    )
    argv = rik_slurm.plugin.rik_build_launch_command(request=request).argv
    assert argv[:3] == ("srun", "--job-name", "nb")
    for pair in (("--cpus-per-task", "4"), ("--mem", "8G"), ("--time", "1:30:00"), ("--gres", "gpu:1"), ("--partition", "gpu"), ("--account", "proj")):
        i = argv.index(pair[0])
        assert argv[i + 1] == pair[1]
    assert "--constraint=avx2" in argv and argv[-2:] == ("/bin/sh", "-s")


def test_node_from_slurm_22_05_task_start_line() -> None:
    out = "srun: job 13 has been allocated resources\nsrun: launch/slurm: _task_start: Node rik-c2, 1 tasks started\n"
    alloc = rik_slurm.plugin.rik_parse_allocation(request=LaunchRequest(interface="slurm"), output=out)
    assert (alloc.job_id, alloc.node) == ("13", "rik-c2")
