"""rik-ssh: no job, nothing to cancel; the transport itself is tested against real hosts in tests/integration."""

from __future__ import annotations

from pathlib import Path

import rik_ssh.plugin
from rik.testing import Expect, SchedulerContract

T = Path(__file__).parents[1] / "data" / "transcripts"


class TestSshContract(SchedulerContract):
    plugin = rik_ssh.plugin
    interfaces = ("ssh",)
    transcripts = {str(T / "slurm-22.05-srun-stdin.txt"): Expect(state="running")}  # any output: the host is there
