"""Fixtures shared by every test: an isolated Jupyter, and rik's CLI run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["rik.testing.fixtures"]  # rik_jupyter, fake_scheduler: what plugin authors get


@pytest.fixture
def jupyter_home(rik_jupyter: Path) -> Path:
    """Jupyter's data, runtime and config dirs, and rik's runtime dir, private to the test: rik.testing's
    ``rik_jupyter``, the fixture plugin authors get."""
    return rik_jupyter


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def rik(jupyter_home: Path):
    """Run the ``rik`` command in a subprocess, exactly as a user types it."""

    def run(*args: str, check: bool = False) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "rik", *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and result.code != 0:
            raise AssertionError(f"rik {' '.join(args)} failed ({result.code}): {result.err}")
        return result

    return run

