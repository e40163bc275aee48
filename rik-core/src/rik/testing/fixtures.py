"""pytest fixtures for a scheduler plugin's tests. Enable them in the plugin's ``tests/conftest.py``::

    pytest_plugins = ["rik.testing.fixtures"]

- ``rik_jupyter``: Jupyter's data, runtime and config directories and rik's runtime directory, private to the
  test, so kernels it adds never touch the user's own.
- ``fake_scheduler``: a factory of :class:`~rik.testing.FakeScheduler` in a directory of the test's; every job
  still running when the test ends is cancelled.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .fakejob import FakeScheduler, Step

__all__ = ["fake_scheduler", "rik_jupyter"]


@pytest.fixture
def rik_jupyter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A short path: ssh's control sockets live in rik's runtime directory, and Unix socket paths are short.
    root = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))
    for variable, sub in (
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "run"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("RIK_RUNTIME_DIR", "r"),
    ):
        (root / sub).mkdir(mode=0o700)
        monkeypatch.setenv(variable, str(root / sub))
    monkeypatch.setenv("JUPYTER_PATH", str(root / "data"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fake_scheduler(tmp_path: Path) -> Iterator[Callable[..., FakeScheduler]]:
    made: list[FakeScheduler] = []

    def make(program: str, steps: Sequence[Step], **options: Any) -> FakeScheduler:
        fake = FakeScheduler(tmp_path / f"fake-{len(made)}-{program}", program, steps, **options)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        for job in fake.jobs().values():
            if job.alive:
                os.kill(job.pid, signal.SIGTERM)
        fake.wait_until_ended()
