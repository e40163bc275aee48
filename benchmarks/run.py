"""rik's benchmarks: what users feel, against the floors and remote_ikernel 0.4.6, in one interleaved run.

Run through nox (``nox -s bench`` brings the test cluster up and installs every distribution), or directly with a
Python that has rik, jupyter_client and pytest installed: ``python benchmarks/run.py [--quick] [--rounds N]``.
Method and caveats: ``benchmarks/README.md``. Results: ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import pwd
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cluster import Cluster, require_cluster  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

RI_VERSION = "0.4.6"
REMOTE_PY = "/usr/bin/python3"
KERNEL_CMD = f"{REMOTE_PY} -m ipykernel_launcher -f {{connection_file}}"
HOSTS = ("rik-gw", "rik-front", "rik-c1", "rik-c2")
MiB = 1024 * 1024
DASH = "\u2013"  # en dash, for ranges in the tables


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Contender:
    key: str
    label: str
    kind: str  # floor | rik | ri
    hosts: tuple[str, ...] = ()  # test hosts its processes live on
    uses_ssh: bool = False  # has a master connection to keep warm (rik with a remote host)
    scheduler: str | None = None  # slurm | sge: check the queue after shutdown
    kernel: str = ""  # kernelspec name, filled in by setup
    env: dict[str, str] = field(default_factory=dict)


CONTENDERS = [
    Contender("local", "local ipykernel (floor)", "floor"),
    Contender("rik-local", "rik local", "rik"),
    Contender("raw-gw", "raw ssh → rik-gw (floor)", "floor", ("rik-gw",)),
    Contender("rik-gw", "rik ssh → rik-gw", "rik", ("rik-gw",), uses_ssh=True),
    Contender("ri-gw", "remote_ikernel 0.4.6 ssh → rik-gw", "ri", ("rik-gw",)),
    Contender("raw-chain", "raw ssh → gw → front → c1 (floor)", "floor", ("rik-gw", "rik-front", "rik-c1")),
    Contender("rik-chain", "rik ssh → gw → front → c1", "rik", ("rik-gw", "rik-front", "rik-c1"), uses_ssh=True),
    Contender("rik-slurm", "rik slurm (srun via gw → front)", "rik", HOSTS, uses_ssh=True, scheduler="slurm"),
    Contender("rik-sge", "rik sge (qlogin via gw → front)", "rik", HOSTS, uses_ssh=True, scheduler="sge"),
]


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command line) for every process (the pid namespace is shared by all test hosts)."""
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


def descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
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


def status_kib(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def is_ssh(cmdline: str) -> bool:
    word = cmdline.split(" ", 1)[0]
    return os.path.basename(word) == "ssh" or cmdline.startswith("ssh:")


def is_master(cmdline: str) -> bool:
    return cmdline.startswith("ssh:") and cmdline.endswith("[mux]")


@dataclass
class Footprint:
    """A kernel's processes: local (the launcher's tree and its ssh masters) and per test host."""

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

    def counts(self) -> dict[str, Any]:
        local = {**self.local, **self.masters}
        remote_all = [(h, c) for h, procs in self.remote.items() for c in procs.values()]
        return {
            "local_processes": len(local),
            "local_ssh": sum(is_ssh(c) for c in local.values()),
            "tunnel_ssh": sum(is_ssh(c) and " -L " in f" {c} " for c in self.local.values()),
            "remote_processes": len(remote_all),
            "ssh_connections": sum(c.startswith("sshd:") for _, c in remote_all),
            "per_host": {h: len(p) for h, p in sorted(self.remote.items()) if p},
        }


class World:
    """What runs and what exists, before a kernel starts, so that its footprint is what appeared since."""

    def __init__(self, bench: Bench, contender: Contender) -> None:
        self.bench = bench
        self.contender = contender
        self.local_before = set(proc_table())
        self.remote_before = {h: set(bench.remote_pids(h)) for h in contender.hosts}
        self.files_before = bench.files()

    def footprint(
        self, launcher: int | None, marker: str | None, jobs: Iterable[str] = (), known: set[int] | None = None
    ) -> Footprint:
        """The kernel's processes now. With ``known`` (its remote processes seen so far), a remote process that
        appeared since counts only if it descends from one of them or runs in the kernel's job: other tests start
        processes as the same user at any time."""
        table = proc_table()
        fp = Footprint()
        mine = descendants(launcher, table) if launcher else set()
        masters = {pid for pid in mine if is_master(table[pid][1])}
        if marker:  # masters that ssh daemonized out of the launcher's tree
            masters |= {
                p for p, (_, cmd) in table.items() if p not in self.local_before and marker in cmd and is_master(cmd)
            }
        kept = set().union(*(descendants(m, table) for m in masters)) if masters else set()
        if masters:  # ProxyJump helpers (ssh -W) that carry a master's connection, whoever their parent is
            theirs = set().union(*(fd_inodes(m) for m in masters))
            kept |= {p for p in mine if " -W " in table[p][1] and fd_inodes(p, (0, 1)) & theirs}
        for pid in mine | kept:  # a master's ProxyJump helpers (ssh -W) live and go with it
            (fp.masters if pid in kept else fp.local)[pid] = table[pid][1]
        for host in self.contender.hosts:
            fp.remote[host] = {
                pid: cmd
                for pid, cmd in self.bench.remote_pids(host).items()
                if pid not in self.remote_before[host] and not foreign(pid, table, set(jobs), known)
            }
        return fp


_JOB_OF = re.compile(r"^(?:slurmstepd: \[(\d+)[.\]]|sge_shepherd-(\d+))")


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
    """The job ids a launcher logged (rik says "job N submitted")."""
    with contextlib.suppress(OSError):
        return re.findall(r"\bjob (\S+) (?:submitted|running)", log_path.read_text(errors="replace"))
    return []


def foreign(pid: int, table: dict[int, tuple[int, str]], jobs: set[str], known: set[int] | None = None) -> bool:
    """A process of the benchmark user that is not our kernel's: started from a test's runuser/nsenter, inside a
    batch job that is not ours (another engineer's tests use the same test users), or, once the kernel's processes
    are ``known``, outside their trees and its job."""
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


# ---------------------------------------------------------------------------------------------------------------
# Talking to kernels
# ---------------------------------------------------------------------------------------------------------------


class Failed(Exception):
    pass


def wait_for(get: Callable[..., dict], pred: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failed(f"no matching message within {timeout:g} s")
        try:
            msg = get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        if pred(msg):
            return msg


def drain(kc: Any) -> None:
    for get in (kc.get_shell_msg, kc.get_iopub_msg):
        with contextlib.suppress(queue.Empty):
            while True:
                get(timeout=0.05)


def start(kernel: str, env: dict[str, str], timeout: float, log_file: Any = None) -> tuple[KernelManager, Any, float]:
    """start_kernel until the first kernel_info reply (requests resent every second, as jupyter_client does)."""
    km = KernelManager(kernel_name=kernel)
    t0 = time.perf_counter()
    km.start_kernel(env=env, stdout=log_file, stderr=log_file)
    kc = km.client()
    kc.start_channels()
    next_send = 0.0
    while True:
        now = time.perf_counter()
        if now - t0 > timeout:
            stop(km, kc)
            raise Failed(f"not ready within {timeout:g} s")
        if now >= next_send:
            kc.kernel_info()
            next_send = now + 1.0
        try:
            msg = kc.get_shell_msg(timeout=0.02)
        except queue.Empty:
            if not km.is_alive():
                stop(km, kc)
                raise Failed("the launcher exited before the kernel was ready") from None
            continue
        if msg["msg_type"] == "kernel_info_reply":
            return km, kc, time.perf_counter() - t0


def settle(kc: Any, timeout: float = 30) -> None:
    """Make sure IOPub is subscribed (a PUB socket drops what it sends before): kernel_info until IOPub speaks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kc.kernel_info()
        try:
            kc.get_iopub_msg(timeout=0.3)
            break
        except queue.Empty:
            continue
    time.sleep(0.2)
    drain(kc)


def execute(kc: Any, code: str, timeout: float = 60, on_iopub: Callable[[dict], None] | None = None) -> None:
    msg_id = kc.execute(code, store_history=False)
    got_reply = got_idle = False
    deadline = time.monotonic() + timeout
    while not (got_reply and got_idle):
        if time.monotonic() > deadline:
            raise Failed(f"{code[:30]!r}: no reply within {timeout:g} s")
        if not got_reply:
            with contextlib.suppress(queue.Empty):
                reply = kc.get_shell_msg(timeout=0 if got_idle is False else 0.5)
                if reply["parent_header"].get("msg_id") == msg_id:
                    got_reply = True
                    if reply["content"]["status"] != "ok":
                        raise Failed(f"{code[:30]!r}: {reply['content'].get('ename')}")
        if not got_idle:
            with contextlib.suppress(queue.Empty):
                msg = kc.get_iopub_msg(timeout=0.5)
                if msg["parent_header"].get("msg_id") == msg_id:
                    if on_iopub:
                        on_iopub(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        got_idle = True


def round_trips(kc: Any, cells: int) -> list[float]:
    times = []
    for _ in range(cells):
        t0 = time.perf_counter()
        execute(kc, "pass", timeout=30)
        times.append(time.perf_counter() - t0)
    return times


def throughput(kc: Any, mib: int) -> float:
    """MiB/s of stdout from one cell, execute_request until idle."""
    lines = mib * 1024
    code = (
        f"import sys\n_l = 'x' * 1023 + '\\n'\nfor _i in range({lines}):\n    sys.stdout.write(_l)\nsys.stdout.flush()"
    )
    got = [0]

    def count(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            got[0] += len(msg["content"]["text"])

    t0 = time.perf_counter()
    execute(kc, code, timeout=300, on_iopub=count)
    elapsed = time.perf_counter() - t0
    if got[0] != lines * 1024:
        raise Failed(f"throughput: received {got[0]} of {lines * 1024} bytes")
    return mib / elapsed


def interrupt(km: KernelManager, kc: Any) -> tuple[float | None, str]:
    """Seconds from interrupt_kernel() to the KeyboardInterrupt on IOPub, or None and what happened instead."""
    msg_id = kc.execute("import time; time.sleep(30)", store_history=False)
    wait_for(
        kc.get_iopub_msg, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "execute_input", 30
    )
    time.sleep(0.3)
    t0 = time.perf_counter()
    km.interrupt_kernel()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            if not km.is_alive():
                return None, "the launcher died on the interrupt"
            continue
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
            latency = time.perf_counter() - t0
            with contextlib.suppress(Failed):
                wait_for(kc.get_shell_msg, lambda m: m["parent_header"].get("msg_id") == msg_id, 10)
            return latency, "ok"
    return None, "no KeyboardInterrupt within 15 s" + ("" if km.is_alive() else "; the launcher died")


def stop(km: KernelManager, kc: Any) -> None:
    with contextlib.suppress(Exception):
        kc.stop_channels()
    with contextlib.suppress(Exception):
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    with contextlib.suppress(Exception):
        km.cleanup_resources()


def launcher_pid(km: KernelManager) -> int | None:
    proc = getattr(km.provisioner, "process", None)
    return proc.pid if proc is not None else None


# ---------------------------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: Cluster) -> None:
        self.args = args
        self.cluster = cluster
        self.user = args.user
        self.uid = pwd.getpwnam(self.user).pw_uid
        self.home = Path(pwd.getpwnam(self.user).pw_dir)
        self.ssh_config = str(cluster.ssh_config(self.user))
        self.root = Path(tempfile.mkdtemp(prefix="rkb", dir="/tmp"))
        self.bin = Path(sys.executable).parent
        self.jupyter_env = {
            "JUPYTER_DATA_DIR": str(self.root / "data"),
            "JUPYTER_PATH": str(self.root / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.root / "run"),
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
        for path in self.jupyter_env.values():
            if path.startswith("/"):
                Path(path).mkdir(mode=0o700, exist_ok=True)
        os.environ.update(self.jupyter_env)
        # remote_ikernel types into a shell in this directory (its --workdir): a directory of the user's own
        self.ri_workdir = self.root / "ri-work"
        self.ri_workdir.mkdir()
        os.chown(self.ri_workdir, self.uid, -1)
        os.chmod(self.root, 0o755)
        self.ri_venv: Path | None = None
        self.keys: list[str] = []

    # -- remote state ------------------------------------------------------------------------------------------
    def remote_pids(self, host: str) -> dict[int, str]:
        return {p.pid: p.cmdline for p in self.cluster.processes(host) if p.user == self.user}

    def files(self) -> set[str]:
        """Files a kernel may leave: in /tmp (the hosts share one file system), the user's home, remote_ikernel's
        working directory. Not the kernel's own state in the home (~/.ipython, ~/.local, ~/.cache): every
        contender's ipykernel makes it."""
        found = set()
        for folder in (Path("/tmp"), self.home, self.ri_workdir):
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    if folder == self.home and entry.name in (".ipython", ".local", ".cache", ".config", ".jupyter"):
                        continue
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_uid == self.uid or folder == self.ri_workdir:
                            found.add(entry.path)
        return found

    def queue(self, scheduler: str) -> list[str]:
        argv = (
            ["squeue", "-h", "-u", self.user, "-o", "%i %j %T"] if scheduler == "slurm" else ["qstat", "-u", self.user]
        )
        out = self.cluster.run("rik-front", argv, user=self.user, timeout=30).stdout
        return [line for line in out.splitlines() if line.strip() and not line.startswith(("job-ID", "---"))]

    # -- setup ---------------------------------------------------------------------------------------------------
    def write_spec(self, name: str, argv: list[str], **extra: Any) -> str:
        folder = self.root / "data" / "kernels" / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"argv": argv, "display_name": name, "language": "python", **extra}
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
        return name

    def rik(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(self.bin / "rik"), *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=60
        )
        if result.returncode != 0:
            raise SystemExit(f"rik {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def rik_add(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = self.rik("manage", "--add", "-k", KERNEL_CMD, *args, env=env)
        return out.split("'")[1]

    def install_ri(self) -> Path:
        """remote_ikernel 0.4.6 from PyPI in a virtual environment of its own (kept between runs)."""
        cache = Path(os.environ.get("RIK_BENCH_CACHE", Path.home() / ".cache" / "rik-bench"))
        venv = cache / f"remote_ikernel-{RI_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
        if not (venv / "bin" / "remote_ikernel").exists():
            log(f"installing remote_ikernel {RI_VERSION} into {venv}")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    f"remote_ikernel=={RI_VERSION}",
                ],
                check=True,
            )
        return venv

    def ri_env(self) -> dict[str, str]:
        """remote_ikernel runs plain `ssh HOST`: a wrapper first on PATH gives that ssh the cluster's config (OpenSSH
        reads ~/.ssh/config from the passwd entry, not $HOME, so a HOME of our own would not reach it)."""
        wrapper_dir = self.root / "ri-bin"
        if not wrapper_dir.exists():
            wrapper_dir.mkdir()
            wrapper = wrapper_dir / "ssh"
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {self.ssh_config} "$@"\n')
            wrapper.chmod(0o755)
        assert self.ri_venv is not None
        return {"PATH": f"{wrapper_dir}:{self.ri_venv / 'bin'}:{os.environ['PATH']}"}

    def setup(self) -> None:
        log(f"scratch directory {self.root}; benchmark user {self.user}")
        self.ri_venv = self.install_ri()
        c = {x.key: x for x in CONTENDERS}
        cfg = self.ssh_config
        raw = [sys.executable, str(HERE / "rawssh.py"), "--ssh-config", cfg]
        c["local"].kernel = self.write_spec(
            "bench_local", [REMOTE_PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        )
        c["raw-gw"].kernel = self.write_spec(
            "bench_raw_gw", [*raw, "--host", "rik-gw", "{connection_file}"], interrupt_mode="message"
        )
        c["raw-chain"].kernel = self.write_spec(
            "bench_raw_chain",
            [*raw, "--host", "rik-c1", "--jump", "rik-gw,rik-front", "{connection_file}"],
            interrupt_mode="message",
        )
        c["rik-local"].kernel = self.rik_add("-i", "local", "-n", "Bench")
        common = ("--ssh-config", cfg, "-n", "Bench")
        c["rik-gw"].kernel = self.rik_add("-i", "ssh", "-x", "rik-gw", *common)
        c["rik-chain"].kernel = self.rik_add("-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front", *common)
        c["rik-slurm"].kernel = self.rik_add("-i", "slurm", "-x", "rik-front", "-t", "rik-gw", *common)
        c["rik-sge"].kernel = self.rik_add("-i", "sge", "-x", "rik-front", "-t", "rik-gw", *common)
        ri_env = {**os.environ, **self.ri_env()}
        out = subprocess.run(
            [
                str(self.ri_venv / "bin" / "remote_ikernel"),
                "manage",
                "--add",
                "-i",
                "ssh",
                "-x",
                "rik-gw",
                "-n",
                "RI",
                "-k",
                KERNEL_CMD,
                "--workdir",
                str(self.ri_workdir),
            ],
            capture_output=True,
            text=True,
            env=ri_env,
            check=True,
        ).stdout
        c["ri-gw"].kernel = out.split("'")[1]
        c["ri-gw"].env = self.ri_env()
        for x in CONTENDERS:
            log(f"  {x.key:10} kernelspec {x.kernel}")

    # -- one kernel's life -------------------------------------------------------------------------------------
    def session(self, c: Contender, phase: str, runtime: Path) -> dict[str, Any]:
        """Start a kernel; cold: round trips, throughput; warm: interrupt; both: footprint, shutdown, leftovers."""
        env = {**os.environ, **c.env}
        if c.kind == "rik":
            env["RIK_RUNTIME_DIR"] = str(runtime)
        world = World(self, c)
        result: dict[str, Any] = {"phase": phase}
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{runtime.name}-{phase}.log"
        with open(log_path, "wb") as log_file:
            km, kc, result["start"] = start(c.kernel, env, timeout=self.args.start_timeout, log_file=log_file)
        launcher = launcher_pid(km)
        key = km.session.key.decode() if km.session.key else ""
        self.keys.append(key)
        marker = str(runtime) if c.kind == "rik" else None
        fp = Footprint()
        try:
            settle(kc)
            execute(kc, "pass")
            fp.merge(world.footprint(launcher, marker, jobs_in(log_path)))
            if phase == "cold":
                result["rtt"] = round_trips(kc, self.args.cells)
                result["mib_s"] = throughput(kc, self.args.mib)
            else:
                result["interrupt"], result["interrupt_note"] = interrupt(km, kc)
            if km.is_alive():
                fp.merge(world.footprint(launcher, marker, jobs_in(log_path), fp.remote_pids()))
            result.update(fp.counts())
            if c.key != "local" and launcher:
                hwm = status_kib(launcher, "VmHWM")
                result["launcher_hwm_mib"] = hwm / 1024 if hwm else None
            result["local_rss_mib"] = sum(status_kib(p, "VmRSS") or 0 for p in {**fp.local, **fp.masters}) / 1024
        except Exception:
            stop(km, kc)
            self.cleanup(world, fp)
            raise
        result.update(self.shutdown(c, km, kc, world, fp, key, log_path))
        return result

    def shutdown(
        self, c: Contender, km: KernelManager, kc: Any, world: World, fp: Footprint, key: str, log_path: Path
    ) -> dict[str, Any]:
        """shutdown_kernel until every process of the kernel is gone on every host, then what is left."""
        # ssh masters outlive a kernel by design (ControlPersist, shared with the next kernel), and the sshd
        # processes of their connections with them: they are reported, not waited for.
        watch = dict(fp.local)
        for host, procs in fp.remote.items():
            watch.update({pid: f"{host}: {cmd}" for pid, cmd in procs.items() if not cmd.startswith("sshd:")})
        t0 = time.perf_counter()
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        returned = time.perf_counter() - t0
        deadline = t0 + self.args.gone_timeout
        while any(alive(p) for p in watch) and time.perf_counter() < deadline:
            time.sleep(0.01)
        remaining = {p: cmd for p, cmd in watch.items() if alive(p)}
        gone = None if remaining else time.perf_counter() - t0
        km.cleanup_resources()
        left: list[str] = [f"process {cmd}" for cmd in remaining.values()]
        late = world.footprint(None, None, jobs_in(log_path), fp.remote_pids())
        for host, procs in late.remote.items():
            left += [
                f"process {host}: {cmd}"
                for pid, cmd in procs.items()
                if pid not in watch and not cmd.startswith("sshd:")
            ]
        kept = [cmd for host, procs in late.remote.items() for cmd in procs.values() if cmd.startswith("sshd:")]
        for path in sorted(self.files() - world.files_before):
            left.append(self.describe_file(path, key))
        history = self.home / ".bash_history"
        with contextlib.suppress(OSError):
            if key and key in history.read_text(errors="replace"):
                left.append(f"the kernel's key in {history}")
        queue_gone = None
        if c.scheduler:
            while True:
                jobs = self.queue(c.scheduler)
                if not jobs:
                    queue_gone = time.perf_counter() - t0
                    break
                if time.perf_counter() - t0 > 15:
                    left.append(f"{c.scheduler} job(s) still queued after 15 s: {'; '.join(jobs)}")
                    break
                time.sleep(0.2)
            # Files the job's node left (e.g. SGE's per-job TMPDIR) are gone once the job left the queue.
            left = [item for item in left if not item.startswith(("file", "directory"))]
            for path in sorted(self.files() - world.files_before):
                left.append(self.describe_file(path, key))
        self.cleanup(world, fp)
        return {
            "shutdown_returned": returned,
            "shutdown_gone": gone,
            "left": left,
            "queue_gone": queue_gone,
            "masters_kept": sum(alive(p) for p in fp.masters),
            "sshd_kept": len(kept),
        }

    def describe_file(self, path: str, key: str) -> str:
        try:
            st = os.stat(path)
            mode = st.st_mode & 0o777
            text = ""
            if os.path.isfile(path) and st.st_size < MiB:
                text = Path(path).read_text(errors="replace")
            what = "file" if os.path.isfile(path) else "directory"
            flags = []
            if key and key in text:
                flags.append("holds the kernel's key")
            if mode & 0o004:
                flags.append("world-readable")
            return f"{what} {path} (mode {mode:o}{', ' + ', '.join(flags) if flags else ''})"
        except OSError:
            return f"{path} (vanished)"

    def cleanup(self, world: World, fp: Footprint) -> None:
        """End what a kernel left (only its own processes, by pid) and remove its files, so the next is clean."""
        for pid in [*fp.local, *[p for procs in fp.remote.values() for p in procs]]:
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
        for path in self.files() - world.files_before:
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)

    # -- the run -------------------------------------------------------------------------------------------------
    def kernel_rounds(self, contenders: list[Contender]) -> dict[str, list[dict[str, Any]]]:
        samples: dict[str, list[dict[str, Any]]] = {c.key: [] for c in contenders}
        for r in range(self.args.rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            if r % 2:
                order.reverse()
            log(f"round {r + 1}/{self.args.rounds}: {' '.join(c.key for c in order)}")
            for c in order:
                runtime = self.root / "rt" / f"{c.key}-{r}"
                runtime.mkdir(parents=True, mode=0o700)
                entry: dict[str, Any] = {"round": r}
                for phase in ("cold", "warm"):
                    # One retry after a pause: other engineers' tests reconfigure the shared test hosts' sshd for
                    # a moment (forwarding off, keys changed). The failure is kept in the results either way.
                    failures = []
                    for attempt in range(2):
                        try:
                            entry[phase] = self.session(
                                c, phase, runtime if attempt == 0 else runtime.with_name(runtime.name + "r")
                            )
                            break
                        except Exception as exc:
                            failures.append(f"{type(exc).__name__}: {exc}")
                            entry[phase] = {"phase": phase, "error": "; ".join(failures)}
                            log(f"    {c.key} {phase}: FAILED {exc}{'; retrying' if attempt == 0 else ''}")
                            if attempt == 0:
                                time.sleep(3)
                                runtime.with_name(runtime.name + "r").mkdir(mode=0o700, exist_ok=True)
                    if failures and "error" not in entry[phase]:
                        entry[phase]["retried_after"] = failures[0]
                samples[c.key].append(entry)
                cold, warm = entry["cold"], entry["warm"]
                log(
                    f"    {c.key:10} start {fmt_s(cold.get('start'))}/{fmt_s(warm.get('start'))} "
                    f"rtt p50 {fmt_ms(pct(cold.get('rtt'), 50))} {fmt_num(cold.get('mib_s'))} MiB/s "
                    f"int {fmt_ms(warm.get('interrupt'))} gone {fmt_s(cold.get('shutdown_gone'))}/{fmt_s(warm.get('shutdown_gone'))} "
                    f"left {len(cold.get('left', [])) + len(warm.get('left', []))}"
                )
        return samples

    def scaling(
        self, kernel: str, label: str, n: int, runtime: Path | None, env_extra: dict[str, str]
    ) -> dict[str, Any]:
        env = {**os.environ, **env_extra}
        if runtime is not None:
            runtime.mkdir(parents=True, mode=0o700)
            env["RIK_RUNTIME_DIR"] = str(runtime)
        hosts = ("rik-gw",) if runtime is not None else ()
        world = World(self, Contender("scale", label, "rik", hosts))
        kms: list[tuple[KernelManager, Any]] = []
        t0 = time.perf_counter()
        for _ in range(n):
            km = KernelManager(kernel_name=kernel)
            km.start_kernel(env=env)
            kc = km.client()
            kc.start_channels()
            kms.append((km, kc))
        ready: dict[int, float] = {}
        sent: dict[int, float] = {}
        while len(ready) < n:
            now = time.perf_counter()
            if now - t0 > 120:
                break
            for i, (_km, kc) in enumerate(kms):
                if i in ready:
                    continue
                if now >= sent.get(i, 0.0):
                    kc.kernel_info()
                    sent[i] = now + 1.0
                with contextlib.suppress(queue.Empty):
                    while True:
                        if kc.get_shell_msg(timeout=0.002)["msg_type"] == "kernel_info_reply":
                            ready[i] = time.perf_counter() - t0
                            break
        fp = Footprint()
        for km, _ in kms:
            fp.merge(world.footprint(launcher_pid(km), str(runtime) if runtime else None))
        launchers = [launcher_pid(km) for km, _ in kms]
        hwm = [status_kib(p, "VmHWM") or 0 for p in launchers if p]
        local_rss = sum(status_kib(p, "VmRSS") or 0 for p in {**fp.local, **fp.masters})
        remote_rss = sum(status_kib(p, "VmRSS") or 0 for procs in fp.remote.values() for p in procs)
        watch = {
            **fp.local,
            **{p: c for procs in fp.remote.values() for p, c in procs.items() if not c.startswith("sshd:")},
        }
        t1 = time.perf_counter()
        threads = [threading.Thread(target=stop_nicely, args=pair) for pair in kms]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        while any(alive(p) for p in watch) and time.perf_counter() - t1 < self.args.gone_timeout:
            time.sleep(0.01)
        gone = None if any(alive(p) for p in watch) else time.perf_counter() - t1
        self.cleanup(world, fp)
        return {
            "n": n,
            "ready": len(ready),
            "all_ready": max(ready.values()) if len(ready) == n else None,
            "first_ready": min(ready.values()) if ready else None,
            "launcher_hwm_mib_each": (sum(hwm) / len(hwm) / 1024) if hwm else None,
            "local_rss_mib": local_rss / 1024,
            "remote_rss_mib": remote_rss / 1024,
            "shutdown_gone": gone,
            **fp.counts(),
        }

    def scaling_rounds(self) -> list[dict[str, Any]]:
        c = {x.key: x for x in CONTENDERS}
        out = []
        jobs = [(n, key) for n in self.args.scale for key in ("rik-gw", "local")]
        for r in range(self.args.scale_rounds):
            order = jobs if r % 2 == 0 else list(reversed(jobs))
            for n, key in order:
                runtime = self.root / "rt" / f"scale-{key}-{n}-{r}" if c[key].kind == "rik" else None
                try:
                    res = self.scaling(c[key].kernel, c[key].label, n, runtime, c[key].env)
                except Exception as exc:
                    res = {"n": n, "error": f"{type(exc).__name__}: {exc}"}
                res.update(round=r, contender=key)
                log(
                    f"  scale {key:7} x{n:<2} all ready {fmt_s(res.get('all_ready'))}, launchers "
                    f"{fmt_num(res.get('launcher_hwm_mib_each'))} MiB each, local {fmt_num(res.get('local_rss_mib'))} MiB, "
                    f"gone {fmt_s(res.get('shutdown_gone'))}"
                )
                out.append(res)
        return out

    def cli_rounds(self) -> dict[str, list[float]]:
        """Start-up of the management commands, each with five kernels of its own to show."""
        rik_data = self.root / "cli-rik"
        ri_data = self.root / "cli-ri"
        cfg = self.ssh_config

        def env_for(data: Path) -> dict[str, str]:
            return {**os.environ, "JUPYTER_DATA_DIR": str(data), "JUPYTER_PATH": str(data)}

        rik_env, ri_env = env_for(rik_data), {**env_for(ri_data), **self.ri_env()}
        for args in (
            ("-i", "local"),
            ("-i", "ssh", "-x", "rik-gw"),
            ("-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front"),
            ("-i", "slurm", "-x", "rik-front", "-t", "rik-gw"),
            ("-i", "sge", "-x", "rik-front", "-t", "rik-gw"),
        ):
            self.rik_add(*args, "--ssh-config", cfg, "-n", "Cli", env=rik_env)
            assert self.ri_venv is not None
            subprocess.run(
                [str(self.ri_venv / "bin" / "remote_ikernel"), "manage", "--add", *args, "-n", "Cli", "-k", KERNEL_CMD],
                capture_output=True,
                check=True,
                env=ri_env,
            )
        assert self.ri_venv is not None
        commands = {
            "rik --version": ([str(self.bin / "rik"), "--version"], rik_env),
            "rik manage --show": ([str(self.bin / "rik"), "manage", "--show"], rik_env),
            "remote_ikernel manage --show": (
                [str(self.ri_venv / "bin" / "remote_ikernel"), "manage", "--show"],
                ri_env,
            ),
            "jupyter kernelspec list": ([str(self.bin / "jupyter"), "kernelspec", "list"], rik_env),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(self.args.cli_runs):
            random.Random(r).shuffle(names)
            for name in names:
                argv, env = commands[name]
                t0 = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, env=env)
                times[name].append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed: {proc.stderr.decode()}")
        return times

    def profile(self) -> dict[str, str]:
        """pyinstrument over `rik manage --show` and over a launcher's cold start to ready and shutdown."""
        out: dict[str, str] = {}
        profile_dir = HERE / "results" / "profiles"
        profile_dir.mkdir(parents=True, exist_ok=True)
        py = sys.executable
        env = {**os.environ, "JUPYTER_DATA_DIR": str(self.root / "cli-rik"), "JUPYTER_PATH": str(self.root / "cli-rik")}
        target = profile_dir / "rik-manage-show.txt"
        subprocess.run(
            [py, "-m", "pyinstrument", "-o", str(target), "-m", "rik", "manage", "--show"],
            env=env,
            capture_output=True,
            check=True,
        )
        out["rik manage --show"] = str(target.relative_to(ROOT))
        c = {x.key: x for x in CONTENDERS}["rik-gw"]
        spec = json.loads((self.root / "data" / "kernels" / c.kernel / "kernel.json").read_text())
        target = profile_dir / "launcher-ssh-cold.txt"
        spec["argv"] = [py, "-m", "pyinstrument", "-o", str(target), *spec["argv"][1:]]
        name = self.write_spec("bench_profile_launcher", spec["argv"], interrupt_mode=spec["interrupt_mode"])
        runtime = self.root / "rt" / "profile"
        runtime.mkdir(parents=True, mode=0o700)
        env = {**os.environ, "RIK_RUNTIME_DIR": str(runtime)}
        km, kc, _ = start(name, env, timeout=60)
        settle(kc)
        execute(kc, "pass")
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        out["launcher (rik ssh → rik-gw, cold start, one cell, shutdown)"] = str(target.relative_to(ROOT))
        log(f"profiles written to {profile_dir}")
        return out


def stop_nicely(km: KernelManager, kc: Any) -> None:
    with contextlib.suppress(Exception):
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()


# ---------------------------------------------------------------------------------------------------------------
# Numbers and tables
# ---------------------------------------------------------------------------------------------------------------


def normalize(item: str) -> str:
    """A leftover without what differs between kernels (ids, scratch paths, queue columns), to count alike ones."""
    item = re.sub(r"/tmp/rkb[^/\s]+/ri-work", "(remote_ikernel's --workdir)", item)
    item = re.sub(r"/tmp/rkb[^/\s]+", "(scratch)", item)
    item = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", item)
    return re.sub(r"\s+", " ", item.split(": N ")[0] if "still queued" in item else item)


def pct(values: list[float] | None, p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:.1f} ms"


def fmt_num(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def spread(values: Iterable[float | None], fmt: Callable[[float], str]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}{DASH}{fmt(max(vals))})"


def s3(x: float) -> str:
    return f"{x:.2f} s"


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def one(x: float) -> str:
    return f"{x:.1f}"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def phase_values(
    samples: list[dict[str, Any]], phase: str, key: str, fn: Callable[[Any], Any] = lambda v: v
) -> list[Any]:
    out = []
    for s in samples:
        v = s.get(phase, {}).get(key)
        out.append(None if v is None else fn(v))
    return out


def round_ratios(
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    phase_a: str,
    phase_b: str,
    key: str,
    fn: Callable[[Any], Any] = lambda v: v,
    invert: bool = False,
) -> list[float]:
    """Per round: a's value over b's (b's over a's with invert, for rates)."""
    out = []
    by_round = {s["round"]: s for s in b}
    for s in a:
        other = by_round.get(s["round"])
        if not other:
            continue
        x, y = s.get(phase_a, {}).get(key), other.get(phase_b, {}).get(key)
        if x is None or y is None:
            continue
        x, y = fn(x), fn(y)
        if x is None or y is None or (y if not invert else x) == 0:
            continue
        out.append(y / x if invert else x / y)
    return out


def summarize(
    samples: dict[str, list[dict[str, Any]]], scale: list[dict[str, Any]], cli: dict[str, list[float]]
) -> dict[str, Any]:
    s: dict[str, Any] = {"contenders": {}, "ratios": {}, "targets": [], "scaling": {}, "cli": {}}
    for key, rows in samples.items():
        entry: dict[str, Any] = {}
        for name, phase, field_name, fn in [
            ("start_cold", "cold", "start", None),
            ("start_warm", "warm", "start", None),
            ("rtt_p50", "cold", "rtt", lambda v: pct(v, 50)),
            ("rtt_p95", "cold", "rtt", lambda v: pct(v, 95)),
            ("mib_s", "cold", "mib_s", None),
            ("interrupt", "warm", "interrupt", None),
            ("launcher_hwm_mib", "cold", "launcher_hwm_mib", None),
        ]:
            vals = [v for v in phase_values(rows, phase, field_name, fn or (lambda v: v)) if v is not None]
            entry[name] = (
                {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
                if vals
                else None
            )
        gone = [
            r[p].get("shutdown_gone") for r in rows for p in ("cold", "warm") if "error" not in r.get(p, {"error": 1})
        ]
        entry["shutdown_gone"] = {"values": gone}
        counted: dict[str, int] = {}
        for r in rows:
            for p in ("cold", "warm"):
                for item in dict.fromkeys(normalize(i) for i in r.get(p, {}).get("left", [])):
                    counted[item] = counted.get(item, 0) + 1
        sessions = sum("error" not in r.get(p, {"error": 1}) for r in rows for p in ("cold", "warm"))
        entry["left"] = [f"{item} (after {n} of {sessions} shutdowns)" for item, n in sorted(counted.items())]
        entry["retried"] = [
            f"round {r['round']} {p}: {r[p]['retried_after']}"
            for r in rows
            for p in ("cold", "warm")
            if "retried_after" in r.get(p, {})
        ]
        entry["errors"] = [
            f"round {r['round']} {p}: {r[p]['error']}"
            for r in rows
            for p in ("cold", "warm")
            if "error" in r.get(p, {})
        ]
        entry["interrupt_notes"] = sorted({r.get("warm", {}).get("interrupt_note") for r in rows} - {None, "ok"})
        for name in ("local_processes", "local_ssh", "tunnel_ssh", "remote_processes", "ssh_connections"):
            vals = [v for v in phase_values(rows, "cold", name) if v is not None]
            entry[name] = {"min": min(vals), "max": max(vals)} if vals else None
        entry["per_host"] = next((r["cold"].get("per_host") for r in rows if "per_host" in r.get("cold", {})), None)
        s["contenders"][key] = entry

    def add_ratio(
        name: str,
        a: str,
        b: str,
        pa: str,
        pb: str,
        field_name: str,
        fn: Callable[[Any], Any] = lambda v: v,
        invert: bool = False,
    ) -> list[float]:
        vals = round_ratios(samples.get(a, []), samples.get(b, []), pa, pb, field_name, fn, invert)
        s["ratios"][name] = vals
        return vals

    p50 = lambda v: pct(v, 50)  # noqa: E731
    p95 = lambda v: pct(v, 95)  # noqa: E731
    for rik_key, raw_key in (("rik-gw", "raw-gw"), ("rik-chain", "raw-chain")):
        add_ratio(f"{rik_key} start cold / {raw_key} cold", rik_key, raw_key, "cold", "cold", "start")
        add_ratio(f"{rik_key} start warm / local warm", rik_key, "local", "warm", "warm", "start")
        add_ratio(f"{rik_key} rtt p50 / {raw_key}", rik_key, raw_key, "cold", "cold", "rtt", p50)
        add_ratio(f"{rik_key} rtt p95 / {raw_key}", rik_key, raw_key, "cold", "cold", "rtt", p95)
        add_ratio(f"{raw_key} MiB/s / {rik_key} MiB/s", rik_key, raw_key, "cold", "cold", "mib_s", invert=True)
    add_ratio("ri-gw start cold / raw-gw cold", "ri-gw", "raw-gw", "cold", "cold", "start")
    add_ratio("ri-gw start / local", "ri-gw", "local", "warm", "warm", "start")
    add_ratio("raw-gw start cold / local", "raw-gw", "local", "cold", "cold", "start")
    add_ratio("rik-local start warm / local warm", "rik-local", "local", "warm", "warm", "start")

    def target(what: str, value: str, ok: bool | None) -> None:
        s["targets"].append({"target": what, "measured": value, "met": ok})

    def med(vals: list[float]) -> float | None:
        return statistics.median(vals) if vals else None

    for suffix in ("gw", "chain"):
        r = s["ratios"]
        for name, limit in (
            (f"rik-{suffix} start cold / raw-{suffix} cold", 1.1),
            (f"rik-{suffix} start warm / local warm", 1.2),
            (f"rik-{suffix} rtt p50 / raw-{suffix}", 1.1),
            (f"rik-{suffix} rtt p95 / raw-{suffix}", 1.1),
            (f"raw-{suffix} MiB/s / rik-{suffix} MiB/s", 1.1),
        ):
            m = med(r.get(name, []))
            target(f"{name} ≤ {limit}", spread(r.get(name, []), ratio), None if m is None else m <= limit)
    rik_keys = [k for k in samples if k.startswith("rik-")]
    for k in rik_keys:
        e = s["contenders"][k]
        vals = list(e["shutdown_gone"]["values"])
        ok_vals = [v for v in vals if v is not None]
        median = statistics.median(ok_vals) if ok_vals and len(ok_vals) == len(vals) else None
        target(
            f"{k}: shutdown to all-gone < 0.5 s (median), nothing left",
            f"{spread(vals, s3)}; left: {'nothing' if not e['left'] else len(e['left'])}"
            + ("" if len(ok_vals) == len(vals) else f"; {len(vals) - len(ok_vals)} not gone in time"),
            median is not None and median < 0.5 and not e["left"],
        )
        if e["launcher_hwm_mib"]:
            target(
                f"{k}: launcher peak RSS < 40 MiB",
                f"{e['launcher_hwm_mib']['median']:.1f} MiB (max {e['launcher_hwm_mib']['max']:.1f})",
                e["launcher_hwm_mib"]["max"] < 40,
            )
        if e["tunnel_ssh"] and k != "rik-local":
            target(
                f"{k}: ≤ 1 ssh process for the tunnels",
                f"{e['tunnel_ssh']['max']} (all local ssh: {e['local_ssh']['max']})",
                e["tunnel_ssh"]["max"] <= 1,
            )
    show = cli.get("rik manage --show")
    if show:
        target(
            "rik manage --show < 150 ms median",
            f"{statistics.median(show) * 1000:.0f} ms",
            statistics.median(show) < 0.150,
        )
    for name, vals in cli.items():
        s["cli"][name] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    for row in scale:
        if "error" in row:
            continue
        key = f"{row['contender']} x{row['n']}"
        s["scaling"].setdefault(key, []).append(row)
    return s


def markdown(meta: dict[str, Any], samples: dict[str, list[dict[str, Any]]], summary: dict[str, Any]) -> str:
    lines = [
        f"# rik benchmarks — {meta['date']}",
        "",
        f"{meta['machine']}; {meta['rounds']} rounds, contenders interleaved; medians with (min{DASH}max) over rounds; "
        f"{meta['cells']} cells per round trip sample, {meta['mib']} MiB per throughput sample. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
        "| contender | start cold | start warm | round trip p50 (ms) | p95 (ms) | IOPub MiB/s | interrupt (ms) | shutdown_kernel returns | shutdown → all gone | launcher peak RSS (MiB) | processes local + remote | ssh conns | tunnel ssh procs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {c.key: c.label for c in CONTENDERS}
    for key, rows in samples.items():
        e = summary["contenders"][key]
        gone = e["shutdown_gone"]["values"]
        not_gone = sum(v is None for v in gone)
        gone_text = spread(gone, s3) + (f", {not_gone} not gone after {meta['gone_timeout']:g} s" if not_gone else "")
        queue_gone = [v for p in ("cold", "warm") for v in phase_values(rows, p, "queue_gone")]
        if any(v is not None for v in queue_gone):
            gone_text += f"; job out of the queue {spread(queue_gone, s3)}"
        warm = spread(phase_values(rows, "warm", "start"), s3)
        if key.startswith(("raw", "ri-")):
            warm += " (no master)"
        intr = spread(phase_values(rows, "warm", "interrupt"), ms)
        if e["interrupt_notes"]:
            intr = ("" if intr == "—" else intr + "; ") + "; ".join(e["interrupt_notes"])
        lp = e["local_processes"]
        rp = e["remote_processes"]
        procs = "—" if not lp else f"{lp['max']} + {rp['max'] if rp else 0}"
        lines.append(
            f"| {labels[key]} | {spread(phase_values(rows, 'cold', 'start'), s3)} | {warm} | "
            f"{spread(phase_values(rows, 'cold', 'rtt', lambda v: pct(v, 50)), ms)} | "
            f"{spread(phase_values(rows, 'cold', 'rtt', lambda v: pct(v, 95)), ms)} | "
            f"{spread(phase_values(rows, 'cold', 'mib_s'), one)} | {intr} | "
            f"{spread([v for p in ('cold', 'warm') for v in phase_values(rows, p, 'shutdown_returned')], s3)} | {gone_text} | "
            f"{spread(phase_values(rows, 'cold', 'launcher_hwm_mib'), one) if key != 'local' else '(is the kernel)'} | {procs} | "
            f"{e['ssh_connections']['max'] if e['ssh_connections'] else '—'} | {e['tunnel_ssh']['max'] if e['tunnel_ssh'] else 0} |"
        )
    lines += ["", "Left behind after shutdown (any round):", ""]
    for key in samples:
        e = summary["contenders"][key]
        items = e["left"]
        lines.append(
            f"- {labels[key]}: "
            + (
                "nothing"
                if not items
                else "; ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
            )
        )
        if e["errors"]:
            lines.append(f"  - failed: {'; '.join(e['errors'])}")
        if e["retried"]:
            lines.append(f"  - failed once, then passed on a retry: {'; '.join(e['retried'])}")
    lines += ["", f"## Ratios, per round (median, min{DASH}max)", "", "| ratio | value |", "| --- | --- |"]
    for name, vals in summary["ratios"].items():
        lines.append(f"| {name} | {spread(vals, ratio)} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for t in summary["targets"]:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    if summary["scaling"]:
        lines += [
            "",
            "## Scaling: N kernels started at once on one host",
            "",
            "| kernels | all ready | first ready | launcher peak RSS each (MiB) | local RSS total (MiB) | remote RSS total (MiB) | local ssh procs | ssh conns | shutdown → all gone |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key, rows in summary["scaling"].items():
            lines.append(
                f"| {key} | {spread([r['all_ready'] for r in rows], s3)} | {spread([r['first_ready'] for r in rows], s3)} | "
                f"{spread([r['launcher_hwm_mib_each'] for r in rows], one)} | {spread([r['local_rss_mib'] for r in rows], one)} | "
                f"{spread([r['remote_rss_mib'] for r in rows], one)} | {max(r['local_ssh'] for r in rows)} | "
                f"{max(r['ssh_connections'] for r in rows)} | {spread([r['shutdown_gone'] for r in rows], s3)} |"
            )
    if summary["cli"]:
        lines += [
            "",
            "## Command start-up (five kernels installed, all five rik plugins)",
            "",
            f"| command | median (min{DASH}max) ms |",
            "| --- | --- |",
        ]
        for name, c in summary["cli"].items():
            lines.append(f"| `{name}` | {c['median'] * 1000:.0f} ({c['min'] * 1000:.0f}{DASH}{c['max'] * 1000:.0f}) |")
    if meta.get("profiles"):
        lines += ["", "Profiles (pyinstrument): " + ", ".join(f"{k}: `{v}`" for k, v in meta["profiles"].items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Metadata and main
# ---------------------------------------------------------------------------------------------------------------


def first_line(argv: list[str], stderr: bool = False) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (p.stderr if stderr else p.stdout).strip() or p.stdout.strip() or p.stderr.strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def metadata(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "?"
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert bench.ri_venv is not None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}",
        "rounds": args.rounds,
        "cells": args.cells,
        "mib": args.mib,
        "gone_timeout": args.gone_timeout,
        "quick": args.quick,
        "versions": {
            "rik": version("rik-core"),
            "Python (harness, launchers)": platform.python_version(),
            "jupyter_client": version("jupyter_client"),
            "ipykernel (kernels, Debian)": first_line(
                [REMOTE_PY, "-c", "import ipykernel; print(ipykernel.__version__)"]
            ),
            "remote_ikernel": first_line(
                [
                    str(bench.ri_venv / "bin" / "python"),
                    "-c",
                    "import remote_ikernel; print(remote_ikernel.__version__)",
                ]
            ),
            "OpenSSH": first_line(["ssh", "-V"], stderr=True).split(",")[0],
            "SLURM": first_line(["srun", "--version"]),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds, fewer cells, less output, scaling 1 and 4")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--cells", type=int, help="trivial cells per round-trip sample")
    parser.add_argument("--mib", type=int, help="MiB of output per throughput sample")
    parser.add_argument("--only", help="comma-separated contender keys: " + ",".join(c.key for c in CONTENDERS))
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: kernels,scaling,cli,profile")
    parser.add_argument("--user", default="rik2", help="test user the remote kernels run as (default: %(default)s)")
    parser.add_argument("--start-timeout", type=float, default=90)
    parser.add_argument("--gone-timeout", type=float, default=5)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.cells = args.cells or (100 if args.quick else 200)
    args.mib = args.mib or (8 if args.quick else 16)
    args.scale = (1, 4) if args.quick else (1, 4, 16)
    args.scale_rounds = 1 if args.quick else 2
    args.cli_runs = 8 if args.quick else 20
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    cluster = require_cluster_or_exit()
    bench = Bench(args, cluster)
    t_start = time.monotonic()
    try:
        bench.setup()
        contenders = [c for c in CONTENDERS if not args.only or c.key in args.only.split(",")]
        samples = bench.kernel_rounds(contenders) if "kernels" not in skip else {}
        scale = bench.scaling_rounds() if "scaling" not in skip else []
        log("command start-up")
        cli = bench.cli_rounds() if "cli" not in skip else {}
        profiles = {}
        if "profile" not in skip:
            try:
                profiles = bench.profile()
            except Exception as exc:  # pyinstrument missing, or a failed start: the numbers still count
                log(f"profiling skipped: {exc}")
        meta = metadata(args, bench)
        meta["profiles"] = profiles
        meta["wall_time_s"] = round(time.monotonic() - t_start, 1)
        summary = summarize(samples, scale, cli)
        text = markdown(meta, samples, summary)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
        payload = {"meta": meta, "summary": summary, "samples": samples, "scaling": scale, "cli": cli}
        for name in (f"{stamp}.json", "latest.json"):
            (out / name).write_text(json.dumps(payload, indent=1, default=str) + "\n")
        for name in (f"{stamp}.md", "latest.md"):
            (out / name).write_text(text)
        print(text)
        log(f"done in {meta['wall_time_s']:.0f} s; results in {out}")
    finally:
        for pid, (_, cmd) in proc_table().items():  # the ssh masters our kernels left for ControlPersist
            if is_master(cmd) and str(bench.root) in cmd:
                with contextlib.suppress(OSError):
                    os.kill(pid, 15)
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
    return 0


def require_cluster_or_exit() -> Cluster:
    try:
        return require_cluster()
    except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
        raise SystemExit(f"bench: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
