"""Front-end tests: the real programs users start rik kernels from (jupyter_server, JupyterLab in a browser,
nbclient, jupyter_client's provisioners, VS Code's way of running a kernelspec)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The front ends themselves come from PyPI (noxfile.py installs them for `nox -s tests`). Without them these tests
# are left out with one loud line, except under CI, where the missing import fails the run.
_MISSING = [m for m in ("jupyter_server", "nbclient", "nbformat", "tornado") if importlib.util.find_spec(m) is None]
if _MISSING and os.environ.get("CI") != "true":
    collect_ignore_glob = ["test_*.py"]
    sys.stderr.write(f"*** tests/frontends LEFT OUT: {', '.join(_MISSING)} not installed (use `nox -s tests`) ***\n")

# The cluster helpers live with the integration tests; import them whichever way pytest was started.
_INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from cluster import Cluster, require_cluster  # noqa: E402
from helpers import leftovers_checked  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster; skips (fails under CI=true) when it is not up."""
    return require_cluster()



@pytest.fixture(autouse=True)
def _nothing_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """As in tests/integration: a test that uses the cluster leaves nothing of its own on it."""
    yield from leftovers_checked(request)
