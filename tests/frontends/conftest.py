"""Front-end tests: the real programs users start rik kernels from (jupyter_server, JupyterLab in a browser,
nbclient, jupyter_client's provisioners, VS Code's way of running a kernelspec)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The cluster helpers live with the integration tests; import them whichever way pytest was started.
_INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from cluster import Cluster, require_cluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster; skips (fails under CI=true) when it is not up."""
    return require_cluster()

