"""Fixtures for rik's integration tests on the real test cluster (tests/cluster/up)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# cluster.py sits next to this file; make it importable however pytest was invoked.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from cluster import Cluster, require_cluster  # noqa: E402
from helpers import leftovers_checked  # noqa: E402


# ------------------------------------------------------------------ the test cluster
@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster; skips (fails under CI=true) when it is not up."""
    return require_cluster()


@pytest.fixture(autouse=True)
def _nothing_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the cluster: what the test user had on the hosts before it is noted, and when it ends
    (passed), nothing of its own may remain: no process on any host, no private kernel directory."""
    yield from leftovers_checked(request)
