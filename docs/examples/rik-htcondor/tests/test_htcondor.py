"""rik-htcondor against rik's contract suite, with transcripts written from HTCondor's documented output."""

from __future__ import annotations

from pathlib import Path

import pytest
import rik_htcondor.plugin
from rik import Allocation, LaunchRequest, Resources, UsageError
from rik.testing import Expect, SchedulerContract

DATA = Path(__file__).parent / "data"


class TestHTCondorContract(SchedulerContract):
    plugin = rik_htcondor.plugin
    interfaces = ("htcondor",)
    transcripts = {
        str(DATA / "condor-submit-interactive.txt"): Expect(job_id="4242", node="node7.example.org", state="running"),
        str(DATA / "condor-submit-interactive-held.txt"): Expect(job_id="4243", error="Job is held"),
        str(DATA / "condor-submit-no-schedd.txt"): Expect(error="Failed to connect to local queue manager"),
    }


def build(**resources: object) -> tuple[str, ...]:
    request = LaunchRequest(interface="htcondor", resources=Resources(**resources))  # type: ignore[arg-type]
    return rik_htcondor.plugin.rik_build_launch_command(request=request).argv


def test_resources_become_submit_commands() -> None:
    argv = build(cpus=4, memory="2G", gpus=1, account="group_physics.alice")
    assert argv[:4] == ("condor_submit", "-interactive", "-batch-name", "rik")
    appended = [argv[i + 1] for i, word in enumerate(argv) if word == "-append"]
    assert appended == [
        "request_cpus = 4",
        "request_memory = 2048",
        "request_gpus = 1",
        "accounting_group = group_physics.alice",
    ]


def test_a_bad_memory_size_is_refused_when_the_kernel_is_made() -> None:
    with pytest.raises(UsageError, match="--memory"):
        build(memory="lots")


def test_the_job_id_is_known_while_the_job_waits() -> None:
    output = "Submitting job(s).\n1 job(s) submitted to cluster 77.\nWaiting for job to start...\n"
    request = LaunchRequest(interface="htcondor")
    assert rik_htcondor.plugin.rik_parse_allocation(request=request, output=output) == Allocation(
        job_id="77", state="idle"
    )


def test_condor_rm_lives_next_to_a_condor_submit_given_by_path() -> None:
    request = LaunchRequest(interface="htcondor", launch_cmd="/opt/condor/bin/condor_submit")
    cancel = rik_htcondor.plugin.rik_build_cancel_command(request=request, allocation=Allocation(job_id="77"))
    assert cancel == ("/opt/condor/bin/condor_rm", "77")
