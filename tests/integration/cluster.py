"""Access to rik's real test cluster (``sudo tests/cluster/up``) from tests.

The cluster is four Linux network namespaces (``rik-gw``, ``rik-front``, ``rik-c1``,
``rik-c2``), each with its own hostname and a real OpenSSH sshd;
``tests/cluster/README.md`` has the layout. Everything here reads ``cluster.json`` in
the state directory (env ``RIK_CLUSTER_DIR``, default ``/run/rik-testcluster``), so
nothing about the layout is repeated in Python.

Typical use (needs root: the helpers enter namespaces and read other users' ``/proc``)::

    def test_kernel_on_c1(cluster):   # fixture from conftest.py (require_cluster())
        cluster.run("rik-c1", ["hostname"]).stdout          # "rik-c1\\n"
        cluster.run("rik-c1", ["id", "-un"], user="rik")    # as the test user
        cluster.processes("rik-c1")                         # what runs on that host
        cluster.ssh_config("rikpp"), cluster.users["rikpp"].askpass

Only the standard library and pytest are used: the remote side has nothing of rik.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

__all__ = [
    "Cluster",
    "ClusterNotUp",
    "Host",
    "Process",
    "User",
    "UP_HINT",
    "load_cluster",
    "require_cluster",
    "state_dir",
]

DEFAULT_STATE_DIR = "/run/rik-testcluster"
UP_HINT = "test cluster is not up: run `sudo tests/cluster/up`"


class ClusterNotUp(RuntimeError):
    """cluster.json is missing or unreadable, or a host's sshd is not running."""


def state_dir() -> Path:
    return Path(os.environ.get("RIK_CLUSTER_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True, kw_only=True)
class Host:
    name: str
    address: str  # the address its name resolves to (/etc/hosts)
    addresses: tuple[str, ...]  # every address; its sshd listens on all of them
    netns: Path  # /run/netns/NAME
    uts: Path  # persistent UTS namespace file (hostname = NAME)
    sshd_pid_file: Path
    sshd_config: Path
    # Drop-in read first by sshd: edit it, then `tests/cluster/hosts.sh reload NAME`.
    extra_conf: Path
    sshd_log: Path


@dataclass(frozen=True, kw_only=True)
class User:
    name: str
    key: (
        Path | None
    )  # client private key (root-readable), None for the password-only user
    passphrase: str | None
    password: str | None
    ssh_config: Path  # use with `ssh -F`; -J hops read it too
    askpass: Path | None  # SSH_ASKPASS script printing the passphrase or password


class Process(NamedTuple):
    pid: int
    user: str
    cmdline: str  # argv joined by spaces


@dataclass(frozen=True, kw_only=True)
class Cluster:
    state_dir: Path
    hosts: Mapping[str, Host]
    users: Mapping[str, User]
    known_hosts: Path
    chain: tuple[str, ...]  # the jump hosts, in order: ("rik-gw", "rik-front")
    compute: tuple[str, ...]  # ("rik-c1", "rik-c2")
    python: str  # the remote interpreter, /usr/bin/python3
    raw: Mapping[str, Any] = field(
        repr=False
    )  # all of cluster.json, incl. slurm/sge/pbs/lsf sections

    # ------------------------------------------------------------------ lookups
    def ssh_config(self, user: str = "rik") -> Path:
        """The ``ssh -F`` file for a test user."""
        return self.users[user].ssh_config

    def section(self, name: str) -> Mapping[str, Any] | None:
        """A section added by another bring-up script (``slurm``, ``sge``, ...)."""
        return self.raw.get(name)

    def _host(self, host: str) -> Host:
        try:
            return self.hosts[host]
        except KeyError:
            raise KeyError(
                f"unknown test host {host!r}; hosts: {', '.join(self.hosts)}"
            ) from None

    # ------------------------------------------------------------------ running things
    def host_argv(
        self, host: str, argv: Sequence[str], *, user: str | None = None
    ) -> list[str]:
        """The argv running ``argv`` in ``host``'s network and UTS namespaces.

        ``nsenter`` (not ``ip netns exec``) so ``/sys`` is not remounted. As ``user``
        through ``runuser`` when given. No login shell: the environment is the caller's,
        with HOME/SHELL/USER/LOGNAME set by ``runuser``.
        """
        h = self._host(host)
        cmd = ["nsenter", f"--net={h.netns}", f"--uts={h.uts}", "--"]
        if user is not None:
            cmd += ["runuser", "-u", user, "--"]
        return cmd + list(argv)

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 60,
        check: bool = False,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on ``host`` and capture its output as text.

        The working directory is ``cwd``, else ``user``'s home, else ``/``.
        """
        if cwd is None:
            cwd = pwd.getpwnam(user).pw_dir if user is not None else "/"
        return subprocess.run(
            self.host_argv(host, argv, user=user),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=input,
            env=None if env is None else dict(env),
            cwd=cwd,
        )

    # ------------------------------------------------------------------ what runs where
    def processes(self, host: str) -> list[Process]:
        """Processes in ``host``'s network namespace (the pid namespace is shared)."""
        return _processes_in_netns(_ns_id(self._host(host).netns))

    def root_processes(self) -> list[Process]:
        """Processes in the root network namespace (tests, rik's launchers).

        Kernel threads are left out.
        """
        return _processes_in_netns(_root_netns())

    def sshd_pid(self, host: str) -> int | None:
        """The pid of ``host``'s listening sshd, or None if it is not running there."""
        h = self._host(host)
        try:
            pid = int(h.sshd_pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            in_host = _ns_id(Path(f"/proc/{pid}/ns/net")) == _ns_id(h.netns)
        except OSError:
            return None
        return pid if in_host and _state(pid) not in ("Z", None) else None


# ---------------------------------------------------------------------- loading
def load_cluster(path: str | os.PathLike[str] | None = None) -> Cluster:
    """Read ``cluster.json`` (default: in :func:`state_dir`).

    Raises :class:`ClusterNotUp` when it is missing or incomplete.
    """
    json_path = Path(path) if path is not None else state_dir() / "cluster.json"
    try:
        data = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise ClusterNotUp(f"{json_path} does not exist") from None
    except (OSError, ValueError) as e:
        raise ClusterNotUp(f"cannot read {json_path}: {e}") from None
    try:
        hosts = {
            name: Host(
                name=name,
                address=h["address"],
                addresses=tuple(h["addresses"]),
                netns=Path(h["netns"]),
                uts=Path(h["uts"]),
                sshd_pid_file=Path(h["sshd_pid_file"]),
                sshd_config=Path(h["sshd_config"]),
                extra_conf=Path(h["extra_conf"]),
                sshd_log=Path(h["sshd_log"]),
            )
            for name, h in data["hosts"].items()
        }
        users = {
            name: User(
                name=name,
                key=_opt_path(u["key"]),
                passphrase=u["passphrase"],
                password=u["password"],
                ssh_config=Path(u["ssh_config"]),
                askpass=_opt_path(u.get("askpass")),
            )
            for name, u in data["users"].items()
        }
        return Cluster(
            state_dir=Path(data.get("state_dir", json_path.parent)),
            hosts=hosts,
            users=users,
            known_hosts=Path(data["known_hosts"]),
            chain=tuple(data["chain"]),
            compute=tuple(data["compute"]),
            python=data["python"],
            raw=data,
        )
    except (KeyError, TypeError) as e:
        raise ClusterNotUp(
            f"{json_path} is incomplete ({e!r}); re-run the bring-up"
        ) from None


def require_cluster() -> Cluster:
    """The cluster if it is up.

    Otherwise one loud line: ``pytest.fail`` when ``CI=true``, else ``pytest.skip``.
    """
    try:
        if os.geteuid() != 0:
            raise ClusterNotUp(
                "these tests need root (namespaces, /proc of other users)"
            )
        cluster = load_cluster()
        down = [name for name in cluster.hosts if cluster.sshd_pid(name) is None]
        if down:
            raise ClusterNotUp(f"sshd not running on {', '.join(down)}")
    except ClusterNotUp as e:
        message = f"{UP_HINT} ({e})"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return cluster


# ---------------------------------------------------------------------- /proc helpers
def _opt_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _ns_id(path: Path) -> tuple[int, int]:
    # A bind-mounted namespace file and /proc/PID/ns/net stat to the same nsfs
    # (device, inode).
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _root_netns() -> tuple[int, int]:
    # kthreadd (pid 2) always lives in the initial namespace; pid 1 may refuse to be
    # inspected (it can hold capabilities the test runner lacks). Else: our own.
    for path in ("/proc/2/ns/net", "/proc/self/ns/net"):
        try:
            return _ns_id(Path(path))
        except OSError:
            continue
    raise OSError("cannot determine the root network namespace")


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _real_uid(pid: int) -> int:
    # /proc/PID's owner is the effective uid, and root for non-dumpable processes
    # (sshd's session children): the real uid in status is what `ps -o user` shows.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise OSError(f"no Uid in /proc/{pid}/status")


def _processes_in_netns(ns: tuple[int, int]) -> list[Process]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if _ns_id(Path(f"/proc/{pid}/ns/net")) != ns:
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv == [b""]:
                continue  # kernel thread (or a zombie): nothing a test started
            uid = _real_uid(pid)
        except OSError:
            continue  # exited meanwhile
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        cmdline = " ".join(a.decode(errors="replace") for a in argv if a)
        found.append(Process(pid, user, cmdline))
    return sorted(found)
