"""rik-pbs against the contract suite. The transcripts are what a real OpenPBS 23.06 server's ``qsub -I`` printed in
the test cluster (tests/cluster/pbs.sh, recorded by tests/cluster/record_transcripts.py)."""

from __future__ import annotations

import re
from pathlib import Path

import rik_pbs.plugin
from rik import Allocation, LaunchRequest, Resources
from rik.testing import Expect, SchedulerContract, read_transcript

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestPbsContract(SchedulerContract):
    plugin = rik_pbs.plugin
    interfaces = ("pbs",)
    # qsub -I never names the node: rik learns it inside the job (see test_the_node_is_the_one_the_job_reported).
    transcripts = {
        str(T / "pbs-23.06-qsub-I.txt"): Expect(job_id="45.rik-front", state="running"),
        str(T / "pbs-23.06-qsub-I-waits-for-busy-node.txt"): Expect(job_id="47.rik-front", state="running"),
        str(T / "pbs-23.06-qsub-I-qdel-running.txt"): Expect(job_id="50.rik-front", state="running"),
        str(T / "pbs-23.06-qsub-I-walltime.txt"): Expect(job_id="53.rik-front", state="running"),
        str(T / "pbs-23.06-qsub-I-queued-deleted.txt"): Expect(job_id="48.rik-front", error="apparently deleted"),
        str(T / "pbs-23.06-qsub-I-ctrl-c-waiting.txt"): Expect(job_id="49.rik-front", error="is being deleted"),
        str(T / "pbs-23.06-qsub-I-unknown-queue.txt"): Expect(error="qsub: Unknown queue"),
        str(T / "pbs-23.06-qsub-I-unknown-resource.txt"): Expect(error="qsub: Unknown resource"),
    }
    ended_lines = ("=>> PBS: job killed: walltime 16 exceeded limit 10",)


#: The node each running transcript's job ran on, as the job's own RIK-PROBE line says (hostname, PBS_JOBID).
NODES = {
    "pbs-23.06-qsub-I.txt": ("rik-c1", "45.rik-front"),
    "pbs-23.06-qsub-I-waits-for-busy-node.txt": ("rik-c2", "47.rik-front"),
    "pbs-23.06-qsub-I-qdel-running.txt": ("rik-c1", "50.rik-front"),
}


def test_the_node_is_the_one_the_job_reported() -> None:
    for name, (node, job_id) in NODES.items():
        text = read_transcript(T / name)
        probe = re.search(r"^RIK-PROBE host=(\S+) job=(\S+)", text, re.M)
        assert probe and probe.groups() == (node, job_id), name
        alloc = rik_pbs.plugin.rik_parse_allocation(request=LaunchRequest(interface="pbs"), output=text)
        assert alloc.job_id == job_id and alloc.node is None, name  # rik takes the node from inside the job


def test_the_ended_line_is_the_one_pbs_printed() -> None:
    text = read_transcript(T / "pbs-23.06-qsub-I-walltime.txt")
    assert TestPbsContract.ended_lines[0] in text.splitlines()


def test_job_id_is_taken_while_waiting() -> None:
    alloc = rik_pbs.plugin.rik_parse_allocation(request=LaunchRequest(interface="pbs"), output="qsub: waiting for job 123.server to start\n")
    assert alloc == Allocation(job_id="123.server", state="queued")


def test_qdel_lives_next_to_a_qsub_given_by_path() -> None:
    request = LaunchRequest(interface="pbs", launch_cmd="/opt/pbs/bin/qsub", resources=Resources(memory="4G"))
    assert rik_pbs.plugin.rik_build_cancel_command(request=request, allocation=Allocation(job_id="7.s")) == ("/opt/pbs/bin/qdel", "7.s")
    assert "mem=4gb" in rik_pbs.plugin.rik_build_launch_command(request=request).argv


def test_a_refusal_indented_with_a_tab_is_an_error() -> None:
    # What OpenPBS 23.06's qsub -I prints when its standard input is not a terminal.
    output = "qsub:\tstandard input and output must be a terminal for\n\tinteractive job submission\n"
    alloc = rik_pbs.plugin.rik_parse_allocation(request=LaunchRequest(interface="pbs"), output=output)
    assert alloc.error == "qsub:\tstandard input and output must be a terminal for"
