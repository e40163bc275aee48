"""Fixtures for rik's integration tests on the real test cluster (tests/cluster/up)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# cluster.py sits next to this file; make it importable however pytest was invoked.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from cluster import Cluster, require_cluster  # noqa: E402


# ------------------------------------------------------------------ the test cluster
@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster; skips (fails under CI=true) when it is not up."""
    return require_cluster()


@pytest.fixture(autouse=True)
def _baseline(request: pytest.FixtureRequest) -> None:
    """Record what the test user already has on the hosts, so each test judges only its own leftovers."""
    if "cluster" not in request.fixturenames:
        return
    from helpers import snapshot

    snapshot(request.getfixturevalue("cluster"))
