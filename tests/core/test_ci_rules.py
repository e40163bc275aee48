"""The rule in tests/conftest.py: under ``CI=true`` nothing is skipped. A test, or a whole module, that would be
skipped fails instead, so a missing piece can never hide in CI; elsewhere a skip stays a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def run_pytest(tmp_path: Path, source: str, ci: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )


SKIPS = """
import pytest

def test_skips():
    pytest.skip("the cluster is not up")

@pytest.mark.skipif(True, reason="no browser")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False

def test_runs():
    pass
"""


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "elsewhere"])
def test_a_skipped_test_fails_under_ci_only(tmp_path: Path, ci: bool) -> None:
    done = run_pytest(tmp_path, SKIPS, ci)
    summary = done.stdout.strip().splitlines()[-1]
    if ci:
        # A skip in the test fails it; a skip mark (found while setting the test up) is an error: both fail the run.
        assert done.returncode == 1 and "1 failed, 1 passed, 1 xfailed, 1 error" in summary, done.stdout
        assert "skipped under CI=true, where every test must run: the cluster is not up" in done.stdout
        assert "skipped under CI=true, where every test must run: no browser" in done.stdout
    else:
        assert done.returncode == 0 and "1 passed, 2 skipped, 1 xfailed" in summary, done.stdout


def test_a_skipped_module_fails_under_ci(tmp_path: Path) -> None:
    source = 'import pytest\npytest.skip("rik-slurm is not installed", allow_module_level=True)\n'
    done = run_pytest(tmp_path, source, ci=True)
    assert done.returncode != 0 and "skipped under CI=true" in done.stdout and "rik-slurm is not installed" in done.stdout
    assert run_pytest(tmp_path, source, ci=False).returncode == 5  # elsewhere: nothing ran, nothing failed
