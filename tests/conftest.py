"""Fixtures shared by every test: an isolated Jupyter, and rik's CLI run as a user would run it; and the rule that
under ``CI=true`` nothing is skipped: a test or a test module that skips there fails, so no skip can hide."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["rik.testing.fixtures"]  # rik_jupyter, fake_scheduler: what plugin authors get

def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {_skip_reason(report)}"
    setattr(item, f"rik_report_{report.when}", report)  # for fixtures that look at the outcome at teardown


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if _in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped under CI=true, where every test must run: {_skip_reason(report)}"


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

