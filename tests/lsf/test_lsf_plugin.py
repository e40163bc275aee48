"""rik-lsf against the contract suite. The transcripts come from the bsub -Is test emulator, which prints the
strings of OpenLava's source (no LSF server can be installed here)."""

from __future__ import annotations

from pathlib import Path

import rik_lsf.plugin
from rik import LaunchRequest, Resources
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestLsfContract(SchedulerContract):
    plugin = rik_lsf.plugin
    interfaces = ("lsf",)
    transcripts = {
        str(T / "lsf-bsub-Is.txt"): Expect(job_id="100", node="rik-c1", state="running"),
        str(T / "lsf-bsub-Is-pending-killed.txt"): Expect(job_id="101", error="Terminated while pending"),
    }
    # LSF's job report names the termination reason (bacct, bhist and the job's mail use the same keywords).
    ended_lines = ("TERM_RUNLIMIT: job killed after reaching LSF run time limit.", "TERM_OWNER: job killed by owner.")


def test_walltime_is_rounded_up_to_minutes_for_bsub() -> None:
    argv = rik_lsf.plugin.rik_build_launch_command(
        request=LaunchRequest(interface="lsf", resources=Resources(walltime="1:00:30", cpus=3, gpus=2))
    ).argv
    assert argv[argv.index("-W") + 1] == "1:01" and argv[argv.index("-n") + 1] == "3" and "num=2" in argv
