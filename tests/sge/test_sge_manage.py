"""`rik manage` with rik-sge: one unambiguous walltime form (H:MM:SS), stored as given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from manage_cases import assert_refused, kernels


@pytest.mark.parametrize("given", ["30:00", "90", "2-12"])
def test_a_walltime_other_schedulers_read_differently_is_refused(rik, jupyter_home: Path, given: str) -> None:
    assert_refused(rik, jupyter_home, ["manage", "--add", "-i", "sge", "--walltime", given], 2,
                   f"bad --walltime {given!r}: use H:MM:SS, e.g. 0:30:00 or 48:00:00")


def test_h_mm_ss_is_accepted_and_printed(rik, jupyter_home: Path) -> None:
    out = rik("manage", "--add", "-i", "sge", "-n", "W", "--walltime", "48:00:00", "--memory", "0.5G", check=True).out
    assert out.splitlines()[1:] == ["  walltime 48:00:00", "  memory 512M"]
    spec = json.loads((kernels(jupyter_home) / "rik_sge_w" / "kernel.json").read_text())
    assert spec["metadata"]["rik"]["config"]["resources"] == {"walltime": "48:00:00", "memory": "512M"}
