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
        str(T / "lsf-bsub-Is.txt"): Expect(state="running"),
        str(T / "lsf-bsub-Is-pending-killed.txt"): Expect(error="Terminated while pending"),
    }


def test_walltime_is_rounded_up_to_minutes_for_bsub() -> None:
    argv = rik_lsf.plugin.rik_build_launch_command(
        request=LaunchRequest(interface="lsf", resources=Resources(walltime="1:00:30", cpus=3, gpus=2))
    ).argv
    assert argv[argv.index("-W") + 1] == "1:01" and argv[argv.index("-n") + 1] == "3" and "num=2" in argv
