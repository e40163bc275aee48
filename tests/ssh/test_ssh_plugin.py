"""rik-ssh: no job, nothing to cancel; the transport itself is tested against real hosts in tests/integration."""

from __future__ import annotations

from pathlib import Path

import rik_ssh.plugin
from rik import Allocation, LaunchRequest
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestSshContract(SchedulerContract):
    plugin = rik_ssh.plugin
    interfaces = ("ssh",)
    # What an ssh session prints before the bootstrap speaks: the host is there, there is no job.
    transcripts = {str(T / "ssh-session.txt"): Expect(state="running")}


def test_there_is_no_job_to_start_parse_or_cancel() -> None:
    request = LaunchRequest(interface="ssh")
    assert rik_ssh.plugin.rik_build_launch_command(request=request).argv == ()
    assert rik_ssh.plugin.rik_parse_allocation(request=request, output="rik-c1\n") == Allocation(state="running")
    assert rik_ssh.plugin.rik_build_cancel_command(request=request, allocation=Allocation(job_id="1")) == ()
