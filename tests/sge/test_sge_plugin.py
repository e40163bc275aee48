"""rik-sge against the contract suite and transcripts recorded on the real Grid Engine 8.1.9 test cell."""

from __future__ import annotations

from pathlib import Path

import rik_sge.plugin
from rik import LaunchRequest, Resources
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestSgeContract(SchedulerContract):
    plugin = rik_sge.plugin
    interfaces = ("sge", "sge_qrsh")
    transcripts = {
        str(T / "sge-8.1.9-qlogin.txt"): Expect(job_id="5", node="rik-c1", state="running"),
        str(T / "sge-8.1.9-qlogin-bad-queue.txt"): Expect(error='unknown queue "nosuch.q"'),
        str(T / "sge-8.1.9-qlogin-qdel-pending.txt"): Expect(error="could not be scheduled"),
        str(T / "sge-8.1.9-qrsh-command.txt"): Expect(job_id="10", node="rik-c1", state="running", interface="sge_qrsh"),
        # Ended at its h_rt limit: qrsh says nothing of it, so Grid Engine's interfaces declare no ended_pattern.
        str(T / "sge-8.1.9-qrsh-h_rt.txt"): Expect(job_id="3", node="rik-c2", state="running", interface="sge_qrsh"),
    }


def test_pe_and_resources_map_to_qlogin_flags() -> None:
    request = LaunchRequest(interface="sge", resources=Resources(cpus=8, pe="mpi", walltime="2:00", memory="2G", queue="all.q"))
    command = rik_sge.plugin.rik_build_launch_command(request=request)
    argv = command.argv
    assert command.tty and argv[:4] == ("qlogin", "-verbose", "-now", "n")
    assert argv[argv.index("-pe"): argv.index("-pe") + 3] == ("-pe", "mpi", "8")
    assert "h_rt=2:00:00" in argv and "h_vmem=2G" in argv and "all.q" in argv


def test_qrsh_runs_the_bootstrap_without_a_terminal() -> None:
    command = rik_sge.plugin.rik_build_launch_command(request=LaunchRequest(interface="sge_qrsh"))
    assert not command.tty and command.argv[0] == "qrsh" and command.argv[-2:] == ("/bin/sh", "-s")
