"""Knobs, output, /proc helpers, the spool (one JSON file per job, shared by every test user) and the
job's environment."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import struct
import sys
import termios
import time

SERVER = "rik-front"                     # LSF submission host
NODES = ("rik-c1", "rik-c2")             # compute hosts, alternated unless one is requested
SPOOL = os.environ.get("RIK_EMU_SPOOL", "/var/spool/rik-emulators")
# The entry point the nodes run (jobshell) and emulators.sh calls (cleanup).
LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "rik_emulator.py")
PYTHON = "/usr/bin/python3"
FIRST_ID = 100
QUEUE_DELAY = {"full": None, "slow": 3.0}  # seconds before dispatch; None = never; others: 0
LSF_DEFAULT_QUEUE = "normal"
LSF_CLEAN_PERIOD = 3600                  # finished LSF jobs stay visible to bjobs this long

# Exit statuses, from the sources (see README):
LSF_FAILED = 255                         # exit(-1) of bkill/bjobs/bsub
LSF_TERMINATED_PENDING = 246             # exit(-10) of nios after <<Terminated while pending>>

POLL = 0.1
EMU_NOTE = ("This is a TEST FIXTURE of the rik project (tests/cluster/emulators), not {real}.\n"
            "It prints what {real} prints and opens a real shell on a test compute host over ssh.\n"
            "See /opt/rik-emulators/README.md.\n")

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def die_with_signal(sig: int) -> None:
    """End this process by SIG (as the real clients do when a signal ends them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)
    os._exit(128 + sig)


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [], 1)
            continue
        data = data[n:]


# ---------------------------------------------------------------------------------------------- /proc
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # fields after "(comm)": [0]=state [1]=ppid ... [19]=starttime
    return data.rpartition(")")[2].split()


def proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie PID, else None."""
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return None
    return int(st[19])


def proc_ref(pid: int) -> dict:
    return {"pid": pid, "start": proc_start(pid)}


def ref_alive(ref: dict | None) -> bool:
    """True if the process recorded in REF (pid + start time, so never a reused pid) still runs."""
    if not ref or not ref.get("pid") or ref.get("start") is None:
        return False
    return proc_start(int(ref["pid"])) == ref["start"]


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ROOT, found through the ppid links in /proc."""
    children: dict[int, list[int]] = {}
    state: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None:
            continue
        children.setdefault(int(st[1]), []).append(int(name))
        state[int(name)] = st[0]
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if state.get(pid) not in ("Z", "X"):
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def signal_ref(ref: dict | None, sig: int) -> bool:
    if not ref_alive(ref):
        return False
    try:
        os.kill(int(ref["pid"]), sig)
        return True
    except OSError:  # gone, or not ours (another user looking at a job)
        return False


def kill_tree(root_ref: dict | None, grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL, the process of ROOT_REF and all its descendants (used by bkill/cleanup
    when the job's supervisor did not end the job itself)."""
    if not ref_alive(root_ref):
        return
    root = int(root_ref["pid"])
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = descendants(root) + ([root] if ref_alive(root_ref) else [])
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)
        deadline = time.time() + wait
        while time.time() < deadline and (ref_alive(root_ref) or descendants(root)):
            time.sleep(0.05)
        if not ref_alive(root_ref) and not descendants(root):
            return


# ---------------------------------------------------------------------------------------------- spool
class Spool:
    """Job files of one flavour: ``SPOOL/<flavour>/jobs/<N>.json`` (mode 0644, owned by the submitter),
    a job-id counter in ``state.json`` and ``lock`` (both 0666, made by emulators.sh)."""

    def __init__(self, flavor: str, prog: str):
        self.flavor = flavor
        self.prog = prog
        self.dir = os.path.join(SPOOL, flavor)
        self.jobs = os.path.join(self.dir, "jobs")

    def check(self) -> None:
        if not (os.path.isdir(self.jobs) and os.path.exists(os.path.join(self.dir, "lock"))):
            err(f"{self.prog}: rik emulator: spool {self.dir} is missing "
                "(run tests/cluster/emulators.sh up as root)\n")
            sys.exit(LSF_FAILED if self.flavor == "lsf" else 1)

    @contextlib.contextmanager
    def lock(self):
        # The lock file already exists (no O_CREAT: fs.protected_regular may forbid creating into a
        # sticky world-writable directory a file someone else owns).
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _bump(self, key: str, first: int) -> int:
        with self.lock():
            fd = os.open(os.path.join(self.dir, "state.json"), os.O_RDWR)
            with os.fdopen(fd, "r+") as f:
                try:
                    state = json.load(f)
                except ValueError:
                    state = {}
                value = int(state.get(key, first))
                state[key] = value + 1
                f.seek(0)
                f.truncate()
                json.dump(state, f)
        return value

    def new_id(self) -> int:
        return self._bump("next_id", FIRST_ID)

    def next_node(self) -> str:
        return NODES[self._bump("next_node", 0) % len(NODES)]

    def path(self, n: int) -> str:
        return os.path.join(self.jobs, f"{n}.json")

    def load(self, n: int) -> dict | None:
        try:
            with open(self.path(n)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save(self, job: dict) -> None:
        tmp = os.path.join(self.jobs, f".{job['id']}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(job, f, indent=1, sort_keys=True)
            os.fchmod(f.fileno(), 0o644)
            if os.geteuid() == 0 and job.get("uid") is not None:
                # root (bkill/cleanup) keeps the owner: the owner must be able to replace it.
                os.fchown(f.fileno(), job["uid"], job["gid"])
        os.replace(tmp, self.path(job["id"]))

    def update(self, n: int, fn) -> dict | None:
        """Load job N under the lock, call FN(job) (it may return False to skip saving), save."""
        with self.lock():
            job = self.load(n)
            if job is None:
                return None
            if fn(job) is not False:
                self.save(job)
            return job

    def remove(self, n: int) -> None:
        for p in (self.path(n), self.launch_path(n), self.nodefile(n)):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(p)

    def launch_path(self, n: int) -> str:
        return os.path.join(self.jobs, f"{n}.launch")

    def nodefile(self, n: int) -> str:
        return os.path.join(self.dir, "aux", f"{n}.{SERVER}")

    def all(self) -> list[dict]:
        jobs = []
        try:
            names = os.listdir(self.jobs)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(".json") and name[:-5].isdigit():
                job = self.load(int(name[:-5]))
                if job is not None:
                    jobs.append(job)
        return sorted(jobs, key=lambda j: j["id"])


def may_control(job: dict) -> bool:
    return os.geteuid() == 0 or os.getuid() == job.get("uid")


def client_gone(job: dict) -> bool:
    """The interactive client of JOB died without cleaning up (SIGKILL): the job is over."""
    return not ref_alive(job.get("client"))


def end_processes(job: dict) -> None:
    """Make sure nothing of JOB runs any more: its supervisor on the node (and everything under it),
    its ssh, its client."""
    signal_ref(job.get("shell"), signal.SIGTERM)
    deadline = time.time() + 8
    while time.time() < deadline and ref_alive(job.get("shell")):
        time.sleep(0.05)
    kill_tree(job.get("shell"))
    for key in ("ssh", "client"):
        kill_tree(job.get(key), grace=0.5)


# ---------------------------------------------------------------------------------------------- env
# Variables a job never inherits from the submission environment (-V / LSF's copy of the environment).
_NOT_INHERITED = ("HOME", "PWD", "USER", "LOGNAME", "SHELL", "OLDPWD", "SHLVL", "_", "MAIL",
                  "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "XDG_SESSION_ID",
                  "XDG_RUNTIME_DIR", "TMUX", "TMUX_PANE", "STY")


def submit_env(prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in os.environ.items()
            if k not in _NOT_INHERITED and not k.startswith(prefixes) and "\0" not in v}


def winsize(fd: int = 0) -> tuple[int, int, int, int]:
    try:
        return struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return (24, 80, 0, 0)
