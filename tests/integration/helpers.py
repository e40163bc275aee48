"""What the integration tests share: making kernels against the test cluster, and proving nothing remains."""

from __future__ import annotations

import glob
import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster

PY = "/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"
IR = "R --slave -e 'IRkernel::main()' --args {connection_file}"
ALL_HOSTS = ("rik-gw", "rik-front", "rik-c1", "rik-c2")


def add_kernel(rik, cluster: Cluster, *args: str, user: str = "rik", kernel_cmd: str = PY) -> str:
    """`rik manage --add` with the cluster's ssh config for ``user``; returns the kernel's name."""
    # A test kernel whose frontend vanished (a failed test) must not outlive the run by an hour, rik's default.
    window = () if "--grace" in args else ("--grace", "60")
    result = rik("manage", "--add", "--ssh-config", str(cluster.ssh_config(user)), "-k", kernel_cmd, *window, *args, check=True)
    return result.out.split("'")[1]


def user_processes(cluster: Cluster, user: str, hosts: tuple[str, ...] = ALL_HOSTS) -> dict[str, list[str]]:
    """Processes of ``user`` on each host, except sshd's own (connections that ssh keeps for reuse)."""
    found: dict[str, list[str]] = {}
    for host in hosts:
        procs = [p for p in cluster.processes(host) if p.user == user and not p.cmdline.startswith("sshd")]
        if procs:
            found[host] = [f"{p.pid} {p.cmdline}" for p in procs]
    return found


def rik_dirs(user: str) -> list[str]:
    """Private kernel directories rik's bootstrap made for ``user`` (every host shares this file system)."""
    uid = pwd.getpwnam(user).pw_uid
    return [d for d in glob.glob("/tmp/rik-*") if os.path.isdir(d) and os.stat(d).st_uid == uid]


#: What was already there when the running test began (set by :func:`leftovers_checked`): each test proves that
#: *its* kernels leave nothing, and an earlier test's failure is reported once, by that test.
BASELINE: dict[str, set[str]] = {"procs": set(), "dirs": set()}


def snapshot(cluster: Cluster, user: str = "rik") -> None:
    BASELINE["procs"] = {line for lines in user_processes(cluster, user).values() for line in lines}
    BASELINE["dirs"] = set(rik_dirs(user))


def _from_baseline(line: str) -> bool:
    """The process (``"PID cmdline"``) was there before the test, or descends from one that was: a kernel that
    an earlier test left to its window starts a ``sleep`` for its watchdog every few seconds."""
    old = {int(entry.split(" ", 1)[0]) for entry in BASELINE["procs"]}
    pid = int(line.split(" ", 1)[0])
    for _ in range(64):
        if pid in old:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def assert_nothing_left(cluster: Cluster, user: str = "rik", timeout: float = 15, hosts: tuple[str, ...] = ALL_HOSTS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        procs = {h: [p for p in ps if not _from_baseline(p)] for h, ps in user_processes(cluster, user, hosts).items()}
        procs = {h: ps for h, ps in procs.items() if ps}
        dirs = [d for d in rik_dirs(user) if d not in BASELINE["dirs"]]
        if not procs and not dirs:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: processes {procs}, directories {dirs}")
        time.sleep(0.25)


def leftovers_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    """The body of the autouse fixtures in conftest.py: for a test that uses ``cluster``, the baseline before it and
    :func:`assert_nothing_left` on every host once it has passed (a failed test has said what went wrong)."""
    if "cluster" not in request.fixturenames:
        yield
        return
    cluster = request.getfixturevalue("cluster")
    snapshot(cluster)
    yield
    reports = (getattr(request.node, f"rik_report_{when}", None) for when in ("setup", "call"))  # tests/conftest.py
    if not any(report is not None and report.failed for report in reports):
        assert_nothing_left(cluster, timeout=20)
