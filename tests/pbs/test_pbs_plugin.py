"""rik-pbs against the contract suite. The transcripts come from the qsub -I test emulator, which prints the
strings of Torque's and OpenPBS's sources (no PBS server can be installed here)."""

from __future__ import annotations

from pathlib import Path

import rik_pbs.plugin
from rik import Allocation, LaunchRequest, Resources
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestPbsContract(SchedulerContract):
    plugin = rik_pbs.plugin
    interfaces = ("pbs",)
    transcripts = {
        str(T / "pbs-qsub-I.txt"): Expect(state="running"),
        str(T / "pbs-qsub-I-queued-deleted.txt"): Expect(error="apparently deleted"),
    }
    ended_lines = ("=>> PBS: job killed: walltime 65 exceeded limit 60",)


def test_job_id_is_taken_while_waiting() -> None:
    alloc = rik_pbs.plugin.rik_parse_allocation(request=LaunchRequest(interface="pbs"), output="qsub: waiting for job 123.server to start\n")
    assert alloc == Allocation(job_id="123.server", state="queued")


def test_qdel_lives_next_to_a_qsub_given_by_path() -> None:
    request = LaunchRequest(interface="pbs", launch_cmd="/opt/pbs/bin/qsub", resources=Resources(memory="4G"))
    assert rik_pbs.plugin.rik_build_cancel_command(request=request, allocation=Allocation(job_id="7.s")) == ("/opt/pbs/bin/qdel", "7.s")
    assert "mem=4gb" in rik_pbs.plugin.rik_build_launch_command(request=request).argv
