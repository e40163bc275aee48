"""What runs where: the test cluster's hosts (network namespaces) and users, read from the bring-up's
``cluster.json`` (``$RIK_CLUSTER_DIR``, default ``/run/rik-testcluster``; layout in ``tests/cluster/README.md``),
and the processes a kernel runs, locally and on each host, found in ``/proc`` (one pid namespace for all).
Only the standard library: the benchmarks do not depend on the test suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ClusterDown(RuntimeError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    ssh_config: str
    askpass: str | None
    uid: int
    home: Path


@dataclass(frozen=True)
class Proc:
    pid: int
    user: str
    cmdline: str


def _ns(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Cluster:
    def __init__(self, state: Path | None = None) -> None:
        self.state = state or Path(os.environ.get("RIK_CLUSTER_DIR") or "/run/rik-testcluster")
        try:
            data = json.loads((self.state / "cluster.json").read_text())
        except (OSError, ValueError) as exc:
            raise ClusterDown(f"cannot read {self.state / 'cluster.json'}: {exc}") from None
        self.raw = data
        self.hosts = tuple(data["hosts"])
        self.netns = {name: Path(h["netns"]) for name, h in data["hosts"].items()}
        self.uts = {name: Path(h["uts"]) for name, h in data["hosts"].items()}
        self.sshd_pid_file = {name: Path(h["sshd_pid_file"]) for name, h in data["hosts"].items()}
        self.users = {
            name: User(
                name, u["ssh_config"], u.get("askpass"), pwd.getpwnam(name).pw_uid, Path(pwd.getpwnam(name).pw_dir)
            )
            for name, u in data["users"].items()
        }
        down = [h for h in self.hosts if self.sshd_pid(h) is None]
        if down:
            raise ClusterDown(f"sshd is not running on {', '.join(down)}")

    def sshd_pid(self, host: str) -> int | None:
        try:
            pid = int(self.sshd_pid_file[host].read_text().split()[0])
            return pid if _ns(f"/proc/{pid}/ns/net") == _ns(self.netns[host]) else None
        except (OSError, ValueError, IndexError):
            return None

    def argv(self, host: str, argv: Sequence[str], user: str | None = None) -> list[str]:
        cmd = ["nsenter", f"--net={self.netns[host]}", f"--uts={self.uts[host]}", "--"]
        if user:
            cmd += ["runuser", "-u", user, "--"]
        return cmd + list(argv)

    def run(self, host: str, argv: Sequence[str], user: str | None = None, timeout: float = 30) -> str:
        cwd = str(self.users[user].home) if user in self.users else "/"
        proc = subprocess.run(
            self.argv(host, argv, user), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
        return proc.stdout

    def processes(self, host: str) -> list[Proc]:
        """Processes in ``host``'s network namespace (the pid namespace is shared by every host)."""
        ns = _ns(self.netns[host])
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if _ns(f"/proc/{entry.name}/ns/net") != ns:
                    continue
                argv = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                uid = next(
                    int(line.split()[1])
                    for line in Path(f"/proc/{entry.name}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
            except (OSError, StopIteration):
                continue
            if not argv:
                continue
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            found.append(Proc(int(entry.name), user, argv.replace(b"\0", b" ").decode(errors="replace").strip()))
        return found

    def sshd_connections(self, host: str, user: str, exclude: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
        """Established TCP connections to ``host``'s sshd (port 22) that an sshd process of ``user`` holds, as
        socket inodes (``socket:[N]``), read from that host's ``/proc/net/tcp*`` and its processes' descriptors."""
        pid = self.sshd_pid(host)
        if pid is None:
            return set()
        inodes = set()
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if cols[1].endswith(":0016") and cols[3] == "01":
                    inodes.add(f"socket:[{cols[9]}]")
        held = set()
        for proc in self.processes(host):
            if not proc.cmdline.startswith(f"sshd: {user}"):
                continue
            try:
                for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                    link = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                    if link in inodes:
                        held.add(link)
            except OSError:
                continue
        return held - set(exclude)


Table = dict[int, tuple[int, str]]


def proc_table() -> Table:
    """pid -> (ppid, command line) for every live process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] == "Z" or not argv:
            continue
        table[int(entry.name)] = (int(fields[1]), argv.replace(b"\0", b" ").decode(errors="replace").strip())
    return table


def descendants(root: int, table: Table) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def started(pid: int) -> float | None:
    """When a process started, in seconds since boot (``CLOCK_BOOTTIME``), to a clock tick (10 ms)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")


def start_path(launcher: int | None, t0: float, ready: float, remote: dict[int, str]) -> dict[str, float | None]:
    """A start's timeline from the processes' start times (to a clock tick), in seconds after ``start_kernel``
    (``t0``, CLOCK_BOOTTIME): the launcher runs, its first child (ssh), the first process on the remote side
    (``remote``: the kernel's remote processes, sshd's own aside), the kernel's Python, the tunnel's ssh, and
    ``ready`` (the first reply)."""
    if launcher is None or started(launcher) is None:
        return {}
    table = proc_table()
    kids = {p: (started(p), table[p][1]) for p in descendants(launcher, table) - {launcher}}
    there = {p: (started(p), cmd) for p, cmd in remote.items() if not cmd.startswith("sshd:")}

    def first(procs: dict[int, tuple[float | None, str]], word: str = "") -> float | None:
        times = [t for t, cmd in procs.values() if t is not None and word in f" {cmd} "]
        return min(times) - t0 if times else None

    return {
        "launcher": (started(launcher) or t0) - t0,
        "first_child": first(kids),
        "remote": first(there),
        "kernel": first(kids if not remote else there, "ipykernel_launcher"),
        "tunnel": first(kids, " -L "),
        "ready": ready,
    }


def status_kib(pid: int, name: str) -> int | None:
    """A ``/proc/PID/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return None


def rss_mib(pids: Iterable[int]) -> float:
    return sum(status_kib(p, "VmRSS") or 0 for p in pids) / 1024


def is_ssh(cmdline: str) -> bool:
    return os.path.basename(cmdline.split(" ", 1)[0]) == "ssh" or cmdline.startswith("ssh:")


def is_master(cmdline: str) -> bool:
    return cmdline.startswith("ssh:") and cmdline.endswith("[mux]")


def kill(pids: Iterable[int], sig: int = 9) -> None:
    """Signal processes this run started (by pid, never by name)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def fd_inodes(pid: int, fds: Iterable[int] | None = None) -> set[str]:
    """The pipes and sockets a process holds (``pipe:[N]``, ``socket:[N]``)."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in fds if fds is not None else [int(f) for f in os.listdir(f"/proc/{pid}/fd")]:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith(("pipe:", "socket:")):
                    found.add(link)
    return found


def jobs_in(log_path: Path) -> list[str]:
    """The job ids a launcher logged (rik says "job N submitted" / "job N running")."""
    with contextlib.suppress(OSError):
        return re.findall(r"\bjob (\S+) (?:submitted|running)", log_path.read_text(errors="replace"))
    return []


_JOB_OF = re.compile(r"^(?:slurmstepd: \[(\d+)[.\]]|sge_shepherd-(\d+))")


def foreign(pid: int, table: Table, jobs: set[str], known: set[int] | None = None) -> bool:
    """A process of the benchmark user that is not our kernel's: started from a test's runuser/nsenter, inside a
    batch job that is not ours (other tests use the same test users), or, once the kernel's processes are ``known``,
    outside their trees and its job."""
    seen = 0
    while pid in table and pid > 1 and seen < 64:
        ppid, cmd = table[pid]
        if known is not None and pid in known:
            return False
        if cmd.startswith(("runuser", "nsenter")):
            return True
        m = _JOB_OF.match(cmd)
        if m:
            return (m.group(1) or m.group(2)) not in jobs
        pid, seen = ppid, seen + 1
    return known is not None


@dataclass
class Footprint:
    """A kernel's processes: local (the launcher's tree), its ssh masters, and per test host."""

    local: dict[int, str] = field(default_factory=dict)
    masters: dict[int, str] = field(default_factory=dict)
    remote: dict[str, dict[int, str]] = field(default_factory=dict)

    def merge(self, other: Footprint) -> None:
        self.local.update(other.local)
        self.masters.update(other.masters)
        for host, procs in other.remote.items():
            self.remote.setdefault(host, {}).update(procs)

    def remote_pids(self) -> set[int]:
        return {pid for procs in self.remote.values() for pid in procs}

    def remote_pids_cmds(self) -> dict[int, str]:
        return {pid: cmd for procs in self.remote.values() for pid, cmd in procs.items()}

    def local_ssh(self) -> set[int]:
        return {p for p, c in {**self.local, **self.masters}.items() if is_ssh(c)}

    def counts(self) -> dict[str, Any]:
        local = {**self.local, **self.masters}
        remote_all = [c for procs in self.remote.values() for c in procs.values()]
        return {
            "local_processes": len(local),
            "local_ssh": sum(is_ssh(c) for c in local.values()),
            "tunnel_ssh": sum(is_ssh(c) and " -L " in f" {c} " for c in self.local.values()),
            "remote_processes": len(remote_all),
            "sshd_processes": sum(c.startswith("sshd:") for c in remote_all),
            "per_host": {h: len(p) for h, p in sorted(self.remote.items()) if p},
        }


class Hosts(Protocol):
    def remote_pids(self, host: str) -> dict[int, str]: ...

    def files(self) -> set[str]: ...


class World:
    """What runs and what exists before a kernel starts, so that its footprint is what appeared since."""

    def __init__(self, bench: Hosts, hosts: tuple[str, ...]) -> None:
        self.bench = bench
        self.hosts = hosts
        self.local_before = set(proc_table())
        self.remote_before = {h: set(bench.remote_pids(h)) for h in hosts}
        self.files_before = bench.files()

    def footprint(
        self, launcher: int | None, marker: str | None, jobs: Iterable[str] = (), known: set[int] | None = None
    ) -> Footprint:
        """The kernel's processes now. ``marker`` (the kernel's runtime directory) finds the ssh masters that left
        the launcher's tree; with ``known`` (its remote processes so far), a remote process that appeared since
        counts only if it descends from one of them or runs in the kernel's job."""
        table = proc_table()
        fp = Footprint()
        mine = descendants(launcher, table) if launcher else set()
        masters = {pid for pid in mine if is_master(table[pid][1])}
        if marker:
            masters |= {
                p for p, (_, cmd) in table.items() if p not in self.local_before and marker in cmd and is_master(cmd)
            }
        kept = set().union(*(descendants(m, table) for m in masters)) if masters else set()
        if masters:  # ProxyJump helpers (ssh -W) that carry a master's connection, whoever their parent is
            theirs = set().union(*(fd_inodes(m) for m in masters))
            kept |= {p for p in mine if " -W " in table[p][1] and fd_inodes(p, (0, 1)) & theirs}
        for pid in mine | kept:
            (fp.masters if pid in kept else fp.local)[pid] = table[pid][1]
        for host in self.hosts:
            fp.remote[host] = {
                pid: cmd
                for pid, cmd in self.bench.remote_pids(host).items()
                if pid not in self.remote_before[host] and not foreign(pid, table, set(jobs), known)
            }
        return fp
