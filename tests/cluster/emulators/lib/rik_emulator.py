#!/usr/bin/python3
"""TEST FIXTURE for rik -- NOT a batch system.

Emulators of the interactive-job clients of two schedulers that cannot run on rik's test machine:

* PBS (Torque flavour):  ``qsub -I``, ``qdel``, ``qstat``
* LSF (OpenLava/IBM):    ``bsub -Is``, ``bkill``, ``bjobs``

They print the strings the real programs print (tests/cluster/emulators/README.md lists which are
known to be exact, from the schedulers' sources or /work/shared/REFERENCE.md section 2, and which are
guesses) and give the user a REAL interactive shell on a compute test host (rik-c1 / rik-c2) through
``ssh -tt``.  There is no server: the client itself "dispatches" its job.  Job state lives in a spool
directory shared by all test users (``/var/spool/rik-emulators/{pbs,lsf}``, made by
``tests/cluster/emulators.sh up``); the job's processes on the node run under a small supervisor
(``jobshell`` below) that kills every process of the job when the job ends, is deleted, or loses its
client -- like a real execution daemon.

Queues are test knobs: ``full`` never dispatches, ``slow`` dispatches after 3 s, any other at once.

Standard library only; run by /usr/bin/python3 on rik-front (clients) and on the nodes (jobshell).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import getopt
import grp
import json
import os
import pwd
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tty

# ---------------------------------------------------------------------------------------------- knobs
SERVER = "rik-front"                     # PBS server name / LSF submission host
NODES = ("rik-c1", "rik-c2")             # compute hosts, alternated unless one is requested
SPOOL = os.environ.get("RIK_EMU_SPOOL", "/var/spool/rik-emulators")
LIB = os.path.realpath(__file__)
PYTHON = "/usr/bin/python3"
FIRST_ID = 100
QUEUE_DELAY = {"full": None, "slow": 3.0}  # seconds before dispatch; None = never; others: 0
PBS_DEFAULT_QUEUE = "batch"
LSF_DEFAULT_QUEUE = "normal"
LSF_CLEAN_PERIOD = 3600                  # finished LSF jobs stay visible to bjobs this long

# Exit statuses, from the sources (see README):
TORQUE_UNKJOBID = 15001 & 0xFF           # 153: qdel/qstat exit(pbs_errno) with PBSE_UNKJOBID
TORQUE_PERM = 15007 & 0xFF               # 159: PBSE_PERM
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
    """SIGTERM, then SIGKILL, the process of ROOT_REF and all its descendants (used by qdel/bkill/cleanup
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
                # root (qdel/bkill/cleanup) keeps the owner: the owner must be able to replace it.
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


# ---------------------------------------------------------------------------------------------- jobshell
def jobshell(argv: list[str]) -> int:
    """Supervisor of one job on the compute node (started by the client as ``ssh -tt NODE python3
    rik_emulator.py jobshell FLAVOR N``): the job's pty is its controlling terminal.

    It registers itself in the job file, runs the job's command (PBS: the user's login shell; LSF:
    ``/bin/sh -c COMMAND``) in the foreground of the pty, and when that command ends -- or when it is
    told to end the job (SIGTERM: qdel/bkill/client; SIGHUP: the connection to the client is gone) --
    kills every process of the job, including daemonised ones (it is a child subreaper, so orphans
    come back to it), then records the command's status and exits with it.
    """
    flavor, n = argv[0], int(argv[1])
    spool = Spool(flavor, "jobshell")
    handled = [signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH, signal.SIGINT,
               signal.SIGQUIT]
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    parent = os.getppid()
    try:
        with open(spool.launch_path(n)) as f:
            launch = json.load(f)
        os.unlink(spool.launch_path(n))
    except (OSError, ValueError) as e:
        err(f"rik emulator jobshell: cannot read the launch file of job {n}: {e}\r\n")
        return 1
    if os.isatty(0):
        with contextlib.suppress(OSError):
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *launch["winsize"]))

    def register(job):
        if job.get("deleted") or job.get("killed") or job.get("shell"):
            return False
        job["shell"] = proc_ref(os.getpid())
        job["exec_node"] = socket.gethostname()
    job = spool.update(n, register)
    if job is None or job.get("shell", {}).get("pid") != os.getpid():
        return 1

    pid = os.fork()
    if pid == 0:  # the job's command, in its own process group in the foreground of the pty
        try:
            os.setpgid(0, 0)
            if os.isatty(0):
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                with contextlib.suppress(OSError):
                    os.tcsetpgrp(0, os.getpid())
                signal.signal(signal.SIGTTOU, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            try:
                os.chdir(launch["cwd"])
            except OSError:
                os.chdir(launch["env"].get("HOME", "/"))
            os.execve(launch["path"], launch["argv"], launch["env"])
        except OSError as e:
            os.write(2, f"{launch['argv'][0]}: {e}\r\n".encode())
        os._exit(127)
    spool.update(n, lambda j: j.__setitem__("cmd", proc_ref(pid)))

    status = None
    terminate = False
    last_check = 0.0
    while status is None:
        info = signal.sigtimedwait(handled, 0.5)
        while True:  # reap: the command, and orphans that came back to us
            try:
                wpid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if wpid == 0:
                break
            if wpid == pid:
                status = wstatus
        if status is not None:
            break
        if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGHUP):
            terminate = True
        elif info is not None and info.si_signo == signal.SIGWINCH:
            job = spool.load(n) or {}
            if job.get("winsize") and os.isatty(0):
                with contextlib.suppress(OSError):
                    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *job["winsize"]))
        if time.time() - last_check > 1.0:
            last_check = time.time()
            job = spool.load(n)
            if job is None or job.get("deleted") or job.get("killed") or client_gone(job):
                terminate = True
            if os.getppid() != parent:
                terminate = True
        if terminate:
            break

    # End the job: everything under us goes.  PBS (pbs_mom): SIGTERM, SIGKILL after kill_delay;
    # LSF (bkill): SIGINT, SIGTERM, SIGKILL, JOB_TERMINATE_INTERVAL apart (intervals shortened here).
    steps = ((signal.SIGINT, 0.5), (signal.SIGTERM, 0.5), (signal.SIGKILL, 2.0)) if flavor == "lsf" \
        else ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0))
    for sig, wait in steps:
        pids = descendants(os.getpid())
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
                os.kill(p, signal.SIGCONT)
        deadline = time.time() + wait
        while time.time() < deadline:
            while True:
                try:
                    wpid, wstatus = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    wpid = 0
                if wpid == 0:
                    break
                if wpid == pid:
                    status = wstatus
            if not descendants(os.getpid()):
                break
            time.sleep(0.05)
    while True:
        try:
            wpid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == 0:
            break
        if wpid == pid:
            status = wstatus
    if status is None:
        status = signal.SIGKILL  # wait status "killed by SIGKILL"
    record = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
              else {"exit": os.WEXITSTATUS(status)})
    spool.update(n, lambda j: j.__setitem__("cmd_status", record))
    return record.get("exit", 128 + record.get("signal", 0))


# ---------------------------------------------------------------------------------------------- client
class Client:
    """The interactive client (qsub -I / bsub -Is): waits while the job queues, starts it on a node
    over ``ssh -tt`` and relays the terminal.  The local terminal is put in raw mode while the job
    runs (like Torque's qsub and LSF's nios); the remote pty does echo and line editing."""

    def __init__(self, spool: Spool, job: dict):
        self.spool = spool
        self.n = job["id"]
        self.ssh = None
        self.saved_tty = None
        self.sig_r, sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH):
            signal.signal(sig, lambda *_: None)  # a Python handler: the wakeup fd gets the number

    # -- signals
    def signals(self, timeout: float, fds: list[int] = ()) -> tuple[list[int], list[int]]:
        try:
            ready = select.select([self.sig_r, *fds], [], [], timeout)[0]
        except InterruptedError:
            ready = [self.sig_r]
        sigs = []
        if self.sig_r in ready:
            with contextlib.suppress(BlockingIOError):
                sigs = list(os.read(self.sig_r, 64))
        return sigs, [fd for fd in ready if fd != self.sig_r]

    # -- queue wait
    def dispatch_at(self, job: dict) -> float | None:
        delay = QUEUE_DELAY.get(job["queue"], 0.0)
        return None if delay is None else job["submit_time"] + delay

    def claim(self, node: str) -> dict | None:
        """Queued -> running, unless the job was deleted meanwhile (None)."""
        def run(job):
            if job.get("deleted") or job.get("killed") or job["state"] not in ("Q", "PEND"):
                return False
            job["state"] = "R" if self.spool.flavor == "pbs" else "RUN"
            job["node"] = node
            job["start_time"] = time.time()
        job = self.spool.update(self.n, run)
        if job is None or job.get("node") != node or job.get("deleted") or job.get("killed"):
            return None
        return job

    # -- start on the node
    def start(self, job: dict, path: str, argv: list[str], env: dict, cwd: str) -> bool:
        """Spawn the job's supervisor on its node; True once it registered (False: failed/deleted)."""
        launch = {"path": path, "argv": argv, "env": env, "cwd": cwd, "winsize": list(winsize(0))}
        fd = os.open(self.spool.launch_path(self.n), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(launch, f)
        remote = f"exec {PYTHON} {LIB} jobshell {self.spool.flavor} {self.n}"

        def child_setup():
            # ssh dies with us (even on SIGKILL): the node then sees the connection drop and the
            # job's supervisor ends the job.
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        self.ssh = subprocess.Popen(
            ["ssh", "-tt", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
             job["node"], remote],
            stdin=-1, stdout=-1, bufsize=0, start_new_session=True, preexec_fn=child_setup)
        self.spool.update(self.n, lambda j: j.__setitem__("ssh", proc_ref(self.ssh.pid)))
        deadline = time.time() + 60
        while time.time() < deadline:
            job = self.spool.load(self.n)
            if job is None or job.get("deleted") or job.get("killed"):
                return False
            if job.get("shell"):
                return True
            if self.ssh.poll() is not None:
                return False
            sigs, _ = self.signals(0.05)
            for sig in sigs:
                if sig in (signal.SIGTERM, signal.SIGHUP):
                    self.abandon(sig)
        return False

    # -- relay
    def relay(self, on_sigint) -> None:
        """Copy the terminal to the job and back until the job's connection ends."""
        if os.isatty(0):
            with contextlib.suppress(termios.error):
                self.saved_tty = termios.tcgetattr(0)
                tty.setraw(0)
        ssh_out, ssh_in = self.ssh.stdout.fileno(), self.ssh.stdin.fileno()
        stdin_open = True
        while True:
            sigs, ready = self.signals(1.0, [ssh_out] + ([0] if stdin_open else []))
            for sig in sigs:
                if sig == signal.SIGWINCH:
                    size = list(winsize(0))
                    job = self.spool.update(self.n, lambda j, size=size: j.__setitem__("winsize", size))
                    if job:
                        signal_ref(job.get("shell"), signal.SIGWINCH)
                elif sig == signal.SIGINT:
                    on_sigint(ssh_in)
                elif sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                    self.abandon(sig)
            if ssh_out in ready:
                try:
                    data = os.read(ssh_out, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                try:
                    write_all(1, data)
                except OSError:  # our terminal is gone: like a hangup
                    self.abandon(signal.SIGHUP)
            if 0 in ready:
                try:
                    data = os.read(0, 4096)
                except OSError as e:
                    if e.errno == errno.EIO:  # terminal hung up
                        self.abandon(signal.SIGHUP)
                    data = b""
                if not data:
                    stdin_open = False
                else:
                    with contextlib.suppress(OSError):
                        write_all(ssh_in, data)
        with contextlib.suppress(Exception):
            self.ssh.wait(timeout=10)
        self.restore_tty()

    def restore_tty(self) -> None:
        if self.saved_tty is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
            self.saved_tty = None

    def abandon(self, sig: int) -> None:
        """The client was told to go (SIGTERM/SIGHUP...): end the job, leave nothing, die by SIG."""
        self.restore_tty()
        job = self.spool.update(self.n, lambda j: j.__setitem__("deleted", True))
        if job is not None:
            job["client"] = None
            end_processes(job)
            if self.spool.flavor == "lsf":
                def gone(j):
                    j["state"], j["end_time"] = "EXIT", time.time()
                    j.setdefault("cmd_status", {"signal": sig})
                self.spool.update(self.n, gone)
            else:
                self.spool.remove(self.n)
        elif self.ssh is not None:
            kill_tree(proc_ref(self.ssh.pid), grace=0.5)
        die_with_signal(sig)


def _pbs_id(text: str) -> int | None:
    head, _, server = text.partition(".")
    if not head.isdigit() or (server and server != SERVER):
        return None
    return int(head)


def _getopt(prog: str, args: list[str], spec: str, usage) -> tuple[list, list]:
    try:
        return getopt.getopt(args, spec)
    except getopt.GetoptError as e:
        opt = e.opt or "?"
        if "requires argument" in e.msg:
            err(f"{prog}: option requires an argument -- '{opt}'\n")
        else:
            err(f"{prog}: invalid option -- '{opt}'\n")
        usage()


def _fixture_help(prog: str, real: str, usage: str) -> None:
    out(f"{prog} -- {EMU_NOTE.format(real=real)}\nusage: {usage}\n")


# ---------------------------------------------------------------------------------------------- PBS
QSUB_OPTS = "a:A:b:c:C:d:D:e:EfF:hIj:J:k:l:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz"
QSUB_USAGE = """usage: qsub [-a date_time] [-A account_string] [-b secs]
    [-c [ none | { enabled | periodic | shutdown |
    depth=<int> | dir=<path> | interval=<minutes>}... ]
    [-C directive_prefix] [-d path] [-D path]
    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-l resource_list] [-m n|{abe}]
    [-M user_list] [-N jobname] [-o path] [-p priority] [-P proxy_user [-J <jobid]]
    [-q queue] [-r y|n] [-S path] [-t number_to_submit] [-T type]  [-u user_list]
    [-w] path
      [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]
"""


def _qsub_usage_exit(message: str):
    # Torque's print_qsub_usage_exit(): "[message]", blank line, usage, exit 2.
    err(f"[{message}]\n\n{QSUB_USAGE}\n")
    sys.exit(2)


def _split_resources(value: str) -> list[tuple[str, str]]:
    pairs = []
    for item in value.split(","):
        if item:
            key, _, val = item.partition("=")
            pairs.append((key.strip(), val.strip()))
    return pairs


def _hms(text: str) -> int | None:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        return None
    secs = 0
    for p in parts:
        secs = secs * 60 + p
    return secs


def qsub(args: list[str]) -> int:
    if "--help" in args:
        _fixture_help("qsub", "Torque/PBS qsub", "qsub -I [-N name] [-q queue] [-l res=val[,..]]... "
                      "[-A account] [-V] [-v var[=val],..]  (queues: full = never starts, "
                      "slow = starts after 3 s)")
        return 0
    if "--version" in args or "--about" in args:
        err("Version: rik-emulator (Torque-style qsub, TEST FIXTURE)\nCommit: none\n")
        return 0
    for a in args:
        if a.startswith("--"):
            _qsub_usage_exit("a single - is not a valid option")
    opts, rest = _getopt("qsub", args, QSUB_OPTS, lambda: _qsub_usage_exit("qsub: invalid option"))
    interactive = any(o == "-I" for o, _ in opts)
    if not interactive:
        if rest and not os.path.exists(rest[0]):
            err(f"qsub: script file '{rest[0]}' cannot be loaded - No such file or directory\n")
            return 1
        _qsub_usage_exit("qsub: rik emulator: only interactive jobs (qsub -I) are emulated")
    name, queue, account, export_all, variables = "STDIN", PBS_DEFAULT_QUEUE, None, False, []
    resources: list[tuple[str, str]] = []
    for o, v in opts:
        if o == "-N":
            name = v
        elif o == "-q":
            queue = v.partition("@")[0] or PBS_DEFAULT_QUEUE
        elif o == "-A":
            account = v
        elif o == "-V":
            export_all = True
        elif o == "-v":
            variables.append(v)
        elif o == "-l":
            resources.extend(_split_resources(v))
    ncpus, host, nnodes, walltime = 1, None, 1, None
    for key, val in resources:
        if key == "ncpus" and val.isdigit():
            ncpus = int(val)
        elif key == "host":
            host = val
        elif key == "walltime":
            walltime = _hms(val)
        elif key in ("nodes", "select"):
            first, *props = val.split(":")
            if first.isdigit():
                nnodes = int(first)
            elif first:
                host = first
            for prop in props:
                k, _, x = prop.partition("=")
                if k in ("ppn", "ncpus") and x.isdigit():
                    ncpus = int(x)
    if nnodes > 1 or (host is not None and host not in NODES):
        # Guess (Torque's wording for a request no node can satisfy); the emulator has one node per job.
        err("qsub: submit error (Job exceeds queue resource limits MSG=cannot locate feasible nodes "
            "(nodes file is empty or all systems are busy))\n")
        return 1
    if not (os.isatty(0) and os.isatty(1)):
        err("qsub:\tstandard input and output must be a terminal for \n\tinteractive job submission\n")
        return 1

    spool = Spool("pbs", "qsub")
    spool.check()
    pw = pwd.getpwuid(os.getuid())
    cwd = os.getcwd()
    n = spool.new_id()
    jobid = f"{n}.{SERVER}"
    job = {"id": n, "flavor": "pbs", "name": name, "queue": queue, "owner": pw.pw_name,
           "uid": pw.pw_uid, "gid": pw.pw_gid, "state": "Q", "submit_time": time.time(),
           "ncpus": ncpus, "host_request": host, "walltime": walltime, "account": account,
           "resources": resources, "workdir": cwd, "submit_args": " ".join(args),
           "client": proc_ref(os.getpid())}
    client = Client(spool, job)
    with spool.lock():
        spool.save(job)
    out(f"qsub: waiting for job {jobid} to start\n")

    # ---- queued
    at = client.dispatch_at(job)
    while True:
        job = spool.load(n)
        if job is None or job.get("deleted"):
            err(f"qsub: job {jobid} apparently deleted\n")
            return 1
        if at is not None and time.time() >= at:
            break
        sigs, _ = client.signals(POLL)
        for sig in sigs:
            if sig == signal.SIGINT:
                _qsub_catchint(spool, n, jobid)
            elif sig in (signal.SIGTERM, signal.SIGHUP):
                client.abandon(sig)
    job = client.claim(host or spool.next_node())
    if job is None:
        err(f"qsub: job {jobid} apparently deleted\n")
        return 1

    # ---- start: the user's login shell on the node, with the job's environment
    node = job["node"]
    nodefile = spool.nodefile(n)
    with contextlib.suppress(OSError):
        with open(nodefile, "w") as f:
            f.write(f"{node}\n" * ncpus)
        os.chmod(nodefile, 0o644)
    env = submit_env(("PBS_",)) if export_all else {}
    for spec in variables:
        for item in spec.split(","):
            k, eq, v = item.partition("=")
            if k:
                env[k] = v if eq else os.environ.get(k, "")
    o = os.environ
    env.update({
        "HOME": pw.pw_dir, "LOGNAME": pw.pw_name, "USER": pw.pw_name, "SHELL": pw.pw_shell,
        "PATH": env.get("PATH", "/bin:/usr/bin"), "TERM": o.get("TERM", "unknown"),
        "PBS_O_HOME": o.get("HOME", pw.pw_dir), "PBS_O_LOGNAME": o.get("LOGNAME", pw.pw_name),
        "PBS_O_PATH": o.get("PATH", ""), "PBS_O_SHELL": o.get("SHELL", pw.pw_shell),
        "PBS_O_HOST": SERVER, "PBS_O_SERVER": SERVER, "PBS_O_WORKDIR": cwd, "PBS_O_QUEUE": queue,
        "PBS_SERVER": SERVER, "PBS_JOBNAME": name, "PBS_JOBID": jobid, "PBS_QUEUE": queue,
        "PBS_ENVIRONMENT": "PBS_INTERACTIVE", "PBS_NODEFILE": nodefile, "PBS_NODENUM": "0",
        "PBS_TASKNUM": "1", "PBS_VNODENUM": "0", "PBS_NUM_NODES": "1", "PBS_NUM_PPN": str(ncpus),
        "PBS_NP": str(ncpus), "NCPUS": str(ncpus), "PBS_MOMPORT": "15003",
    })
    for k in ("LANG", "MAIL", "TZ"):
        if k in o:
            env[f"PBS_O_{k}"] = o[k]
    if walltime is not None:
        env["PBS_WALLTIME"] = str(walltime)
    if account:
        env["PBS_ACCOUNT"] = account
    shell = pw.pw_shell or "/bin/sh"
    if not client.start(job, shell, ["-" + os.path.basename(shell)], env, pw.pw_dir):
        job = spool.load(n)
        if job is None or job.get("deleted"):
            err(f"qsub: job {jobid} apparently deleted\n")
        else:
            err(f"qsub: rik emulator: could not start the job's shell on {node}\n")
        if job is not None:
            job["client"] = None
            end_processes(job)
        spool.remove(n)
        return 1
    out(f"qsub: job {jobid} ready\n\n")

    # ---- running: SIGINT/SIGTERM ignored by Torque's qsub now (Ctrl-C reaches the job as a byte)
    client.relay(on_sigint=lambda fd: None)
    out(f"\nqsub: job {jobid} completed\n")
    job = spool.load(n)
    if job is not None:
        job["client"] = None
        if ref_alive(job.get("shell")):
            end_processes(job)
    spool.remove(n)
    # Torque (and OpenPBS) qsub -I exit 0 when the job ends, whatever the shell's status.
    return 0


def _qsub_catchint(spool: Spool, n: int, jobid: str) -> None:
    """Torque's catchint(): ask, 60 s to answer ('y' deletes the job and exits 0)."""
    out("Do you wish to terminate the job and exit (y|[n])? ")
    deadline = time.time() + 60
    while True:
        left = deadline - time.time()
        ready = select.select([0], [], [], max(left, 0))[0] if left > 0 else []
        if not ready:
            out("Timeout -- deleting job\n")
            break
        try:
            line = os.read(0, 1024).decode(errors="replace")
        except OSError:
            line = ""
        if line == "":  # EOF: nothing more will come; wait for the alarm like getchar() would
            time.sleep(max(deadline - time.time(), 0))
            continue
        c = line[0]
        if c in "nN\n":
            return
        if c in "yY":
            break
        out("yes or no please\n")
    # bailout()
    out(f"Job {jobid} is being deleted\n")
    job = spool.load(n)
    if job is not None:
        job["client"] = None
        end_processes(job)
    spool.remove(n)
    sys.exit(0)


def _pbs_ids(prog: str, ids: list[str], spool: Spool) -> tuple[list[dict], int]:
    jobs, rc = [], 0
    for text in ids:
        n = _pbs_id(text)
        job = spool.load(n) if n is not None else None
        if job is not None and client_gone(job):
            _pbs_reap(spool, job)
            job = None
        if job is None:
            shown = text if "." in text else f"{text}.{SERVER}"
            err(f"{prog}: Unknown Job Id {shown}\n")
            rc = TORQUE_UNKJOBID
        else:
            jobs.append(job)
    return jobs, rc


def _pbs_reap(spool: Spool, job: dict) -> None:
    """A job whose qsub died without cleaning up (SIGKILL) is over: end what is left, forget it
    (only its owner or root can; for anyone else it is simply not shown)."""
    if may_control(job):
        end_processes(job)
        spool.remove(job["id"])


def qdel(args: list[str]) -> int:
    if "--help" in args:
        _fixture_help("qdel", "Torque/PBS qdel", "qdel [{ -p | -W delay | -m message}] JOBID...")
        return 0
    if "--version" in args:
        err("Version: rik-emulator (Torque-style qdel, TEST FIXTURE)\nCommit: none\n")
        return 0

    def usage():
        err("usage: qdel [{ -p | -W delay | -m message}] [<JOBID>[<JOBID>]|'all'|'ALL']...\n")
        err("       -m, -p, and -W are mutually exclusive\n")
        sys.exit(2)
    _opts, ids = _getopt("qdel", args, "m:pW:", usage)
    if not ids:
        usage()
    spool = Spool("pbs", "qdel")
    spool.check()
    rc = 0
    if any(i in ("all", "ALL") for i in ids):
        ids = [str(j["id"]) for j in spool.all() if may_control(j)] + [i for i in ids if i not in ("all", "ALL")]
    for text in ids:
        if _pbs_id(text) is None and not text.isdigit():
            err(f"qdel: illegally formed job identifier: {text}\n")
            rc = 1
            continue
        jobs, r = _pbs_ids("qdel", [text], spool)
        rc = rc or r
        for job in jobs:
            if not may_control(job):
                err(f"qdel: Unauthorized Request  {job['id']}.{SERVER}\n")
                rc = rc or TORQUE_PERM
                continue
            _pbs_delete(spool, job)
    return rc


def _pbs_delete(spool: Spool, job: dict) -> None:
    n = job["id"]
    if job["state"] == "Q":
        # The server forgets a queued job; its qsub notices ("apparently deleted").
        with spool.lock():
            spool.remove(n)
        return
    job = spool.update(n, lambda j: j.__setitem__("deleted", True)) or job
    # pbs_mom kills the job; qsub's connection ends, it prints "completed" and removes the job.
    signal_ref(job.get("shell"), signal.SIGTERM)
    if not job.get("shell"):
        signal_ref(job.get("ssh"), signal.SIGTERM)
    deadline = time.time() + 8
    while time.time() < deadline and ref_alive(job.get("shell")):
        time.sleep(0.05)
    kill_tree(job.get("shell"))
    deadline = time.time() + 5
    while time.time() < deadline and os.path.exists(spool.path(n)) and ref_alive(job.get("client")):
        time.sleep(0.05)
    if os.path.exists(spool.path(n)):
        kill_tree(job.get("ssh"), grace=0.5)
        if not ref_alive(job.get("client")):
            spool.remove(n)


def _ctime(t: float | None) -> str:
    return time.ctime(t) if t else ""


def qstat(args: list[str]) -> int:
    if "--help" in args:
        _fixture_help("qstat", "Torque/PBS qstat", "qstat [-f] [JOBID...]")
        return 0
    if "--version" in args:
        err("Version: rik-emulator (Torque-style qstat, TEST FIXTURE)\nCommit: none\n")
        return 0

    def usage():
        err("usage: \nqstat [-f [-1]] [-W site_specific] [-x] [ job_identifier... | destination... ]\n")
        sys.exit(2)
    opts, ids = _getopt("qstat", args, "f1aeinrsu:W:xGMQqtBl", usage)
    full = any(o == "-f" for o, _ in opts)
    users = [v for o, v in opts if o == "-u"]
    spool = Spool("pbs", "qstat")
    spool.check()
    if ids:
        jobs, rc = _pbs_ids("qstat", ids, spool)
    else:
        jobs, rc = [], 0
        for job in spool.all():
            if client_gone(job):
                _pbs_reap(spool, job)
            elif not users or job["owner"] in ",".join(users).split(","):
                jobs.append(job)
    if full:
        for job in jobs:
            out(_qstat_full(job))
    elif jobs:
        out("Job ID                    Name             User            Time Use S Queue\n"
            "------------------------- ---------------- --------------- -------- - -----\n")
        for job in jobs:
            used = "00:00:00" if job["state"] == "R" else "0"
            out(f"{str(job['id']) + '.' + SERVER:<25.25} {job['name']:<16.16} {job['owner']:<15.15} "
                f"{used:>8} {job['state']} {job['queue']:<5}\n")
    return rc


def _qstat_full(job: dict) -> str:
    jid = f"{job['id']}.{SERVER}"
    running = job["state"] == "R"
    lines = [f"Job Id: {jid}", f"Job_Name = {job['name']}", f"Job_Owner = {job['owner']}@{SERVER}"]
    if running:
        lines += ["resources_used.cput = 00:00:00", "resources_used.walltime = "
                  + time.strftime("%H:%M:%S", time.gmtime(time.time() - job["start_time"]))]
    lines += [f"job_state = {job['state']}", f"queue = {job['queue']}", f"server = {SERVER}"]
    if job.get("account"):
        lines.append(f"Account_Name = {job['account']}")
    lines += ["Checkpoint = u", f"ctime = {_ctime(job['submit_time'])}"]
    if running:
        cpus = "0" if job["ncpus"] == 1 else f"0-{job['ncpus'] - 1}"
        lines.append(f"exec_host = {job['node']}/{cpus}")
    lines += ["Hold_Types = n", "interactive = True", "Join_Path = n", "Keep_Files = n",
              "Mail_Points = a", f"mtime = {_ctime(job.get('start_time') or job['submit_time'])}",
              "Priority = 0", f"qtime = {_ctime(job['submit_time'])}", "Rerunable = False"]
    for key, val in job["resources"]:
        lines.append(f"Resource_List.{key} = {val}")
    if not any(k in ("ncpus", "nodes", "select") for k, _ in job["resources"]):
        lines.append("Resource_List.nodes = 1")
    if running and job.get("shell"):
        lines.append(f"session_id = {job['shell']['pid']}")
    lines += [f"Variable_List = PBS_O_QUEUE={job['queue']},PBS_O_HOST={SERVER},"
              f"PBS_O_WORKDIR={job['workdir']},PBS_O_SERVER={SERVER}",
              f"euser = {job['owner']}", f"egroup = {_group(job['gid'])}", "queue_type = E",
              f"etime = {_ctime(job['submit_time'])}", f"submit_args = {job['submit_args']}"]
    if running:
        lines += [f"start_time = {_ctime(job['start_time'])}", "start_count = 1"]
    lines += ["fault_tolerant = False", "job_radix = 0", f"submit_host = {SERVER}"]
    return lines[0] + "\n" + "".join(f"    {line}\n" for line in lines[1:]) + "\n"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# ---------------------------------------------------------------------------------------------- LSF
# bsub options that take a value (OpenLava and IBM LSF 10 spellings); anything else starting with "-"
# before the command is a flag.
BSUB_VALUE_OPTS = {
    "-a", "-alloc_flags", "-app", "-ar", "-b", "-C", "-c", "-clusters", "-cn_cu", "-cn_mem", "-core_isolation",
    "-csm", "-cwd", "-D", "-data", "-datagrp", "-E", "-e", "-eo", "-Ep", "-eptl", "-env", "-ext", "-F", "-f",
    "-freq", "-G", "-g", "-gpu", "-hostfile", "-i", "-is", "-J", "-Jd", "-jsdl", "-jsdl_strict", "-jsm", "-k",
    "-L", "-Lp", "-ln_mem", "-ln_slots", "-M", "-m", "-mig", "-n", "-nnodes", "-o", "-oo", "-outdir", "-P",
    "-p", "-pack", "-ptl", "-Q", "-q", "-R", "-rcacct", "-rn", "-S", "-s", "-sla", "-sp", "-stage", "-step_cgroup",
    "-T", "-t", "-U", "-u", "-v", "-W", "-We", "-w", "-wa", "-wt", "-XF", "-Zs",
}
BSUB_INTERACTIVE = {"-I", "-Ip", "-Is", "-IS", "-ISp", "-ISs", "-IX"}
BSUB_USAGE = "bsub -Is [-n N] [-q queue] [-J name] [-W [hh:]mm] [-M mem] [-R res] [-P project] [-m host] " \
             "[-gpu ...] command [args]"


def _lsf_hosts(spec: str) -> list[str]:
    hosts = []
    for word in spec.split():
        name = word.rstrip("!").split("+")[0]
        if name:
            hosts.append(name)
    return hosts


def _lsf_time(t: float | None) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(t)) if t else "-"


def bsub(args: list[str]) -> int:
    if "--help" in args[:1] or "-h" in args[:1]:
        _fixture_help("bsub", "IBM LSF / OpenLava bsub", BSUB_USAGE + "  (queues: full = never starts, "
                      "slow = starts after 3 s)")
        return 0
    if args[:1] == ["-V"]:
        err("rik emulator of LSF bsub (TEST FIXTURE), no version\n")
        return 0
    opts: dict[str, str] = {}
    interactive = False
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        a = args[i]
        if a == "--":
            i += 1
            break
        if a in BSUB_INTERACTIVE:
            interactive = True
        elif a in BSUB_VALUE_OPTS or (len(a) > 2 and a[:2] in BSUB_VALUE_OPTS and a[:2] not in ("-I",)):
            if a in BSUB_VALUE_OPTS:
                if i + 1 >= len(args):
                    err(f"bsub: option requires an argument -- '{a[1:]}'\n")
                    return LSF_FAILED
                opts[a] = args[i + 1]
                i += 1
            else:  # attached value: -n4, -qslow, -W10
                opts[a[:2]] = a[2:]
        i += 1
    command = args[i:]
    if not interactive:
        err("bsub: rik emulator: only interactive jobs (bsub -I, -Ip, -Is) are emulated. Job not submitted.\n")
        return LSF_FAILED
    if not command:
        err("bsub: rik emulator: a command is required (bsub -Is COMMAND). Job not submitted.\n")
        return LSF_FAILED
    queue_given = "-q" in opts
    queue = opts.get("-q") or os.environ.get("LSB_DEFAULTQUEUE") or LSF_DEFAULT_QUEUE
    nproc = 1
    if "-n" in opts:
        first = opts["-n"].split(",")[0]
        if not first.isdigit() or int(first) < 1:
            err("Bad argument. Job not submitted.\n")
            return LSF_FAILED
        nproc = int(first)
    host = None
    if "-m" in opts:
        wanted = [h for h in _lsf_hosts(opts["-m"]) if h in NODES]
        if not wanted:
            err("Bad host name, host group name or cluster name. Job not submitted.\n")
            return LSF_FAILED
        host = wanted[0]
    cmdline = " ".join(command)  # LSF joins the words with spaces (no re-quoting)
    name = opts.get("-J", cmdline)

    spool = Spool("lsf", "bsub")
    spool.check()
    pw = pwd.getpwuid(os.getuid())
    cwd = os.getcwd()
    n = spool.new_id()
    job = {"id": n, "flavor": "lsf", "name": name, "command": cmdline, "queue": queue,
           "owner": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "state": "PEND",
           "submit_time": time.time(), "ncpus": nproc, "host_request": host, "options": opts,
           "workdir": cwd, "client": proc_ref(os.getpid())}
    client = Client(spool, job)
    with spool.lock():
        spool.save(job)
    submitted = (f"Job <{n}> is submitted to queue <{queue}>.\n" if queue_given
                 else f"Job <{n}> is submitted to default queue <{queue}>.\n")
    (err if os.environ.get("BSUB_STDERR") else out)(submitted)
    err("<<Waiting for dispatch ...>>\n")

    # ---- pending
    at = client.dispatch_at(job)
    while True:
        job = spool.load(n)
        if job is None or job.get("killed") or job["state"] != "PEND":
            err("<<Terminated while pending>>\r\n")
            return LSF_TERMINATED_PENDING
        if at is not None and time.time() >= at:
            break
        sigs, _ = client.signals(POLL)
        if any(s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT) for s in sigs):
            # nios before the job started: PassSig() runs LSF_NIOS_DIE_CMD = "bkill <N>".
            _lsf_finish_pending(spool, n)
            out(f"Job <{n}> is being terminated\n")
            return 0
    job = client.claim(host or spool.next_node())
    if job is None:
        err("<<Terminated while pending>>\r\n")
        return LSF_TERMINATED_PENDING

    # ---- start: /bin/sh -c COMMAND on the node, in the submission directory and environment
    node = job["node"]
    env = submit_env(("LSB_", "LS_JOBPID", "LSF_", "OPENLAVA_"))
    env.update({
        "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell,
        "PWD": cwd, "LSB_JOBID": str(n), "LSB_JOBNAME": name, "LSB_QUEUE": queue,
        "LSB_HOSTS": " ".join([node] * nproc), "LSB_MCPU_HOSTS": f"{node} {nproc}",
        "LSB_DJOB_NUMPROC": str(nproc), "LSB_MAX_NUM_PROCESSORS": str(nproc), "LSB_JOBINDEX": "0",
        "LSB_INTERACTIVE": "Y", "LSB_SUB_HOST": SERVER, "LS_SUBCWD": cwd, "LSB_EXEC_CLUSTER": "rik",
        "LSB_JOBEXIT_STAT": "0", "LSFUSER": pw.pw_name, "TERM": os.environ.get("TERM", "dumb"),
    })
    if "-P" in opts:
        env["LSB_PROJECT_NAME"] = opts["-P"]
    if "PATH" not in env:
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if not client.start(job, "/bin/sh", ["/bin/sh", "-c", cmdline], env, cwd):
        job = spool.load(n)
        if job is None or job.get("killed"):
            err("<<Terminated while pending>>\r\n")
            return LSF_TERMINATED_PENDING
        err(f"bsub: rik emulator: could not start the job on {node}\n")
        job["client"] = None
        end_processes(job)
        spool.update(n, lambda j: j.update(state="EXIT", end_time=time.time(), client=None))
        return LSF_FAILED
    err(f"<<Starting on {node}>>\r\n")

    # ---- running: nios passes SIGINT on to the job (here: a Ctrl-C on the job's terminal)
    client.relay(on_sigint=lambda fd: write_all(fd, b"\x03"))
    job = spool.load(n) or {}
    job["client"] = None
    if ref_alive(job.get("shell")):
        end_processes(job)
        job = spool.load(n) or job
    status = job.get("cmd_status") or {"exit": client.ssh.returncode if client.ssh else 1}
    code = status.get("exit", 0)

    def finish(j):
        j["state"] = "DONE" if status.get("exit") == 0 and not j.get("killed") else "EXIT"
        j["end_time"] = time.time()
        j["client"] = None
        j["exit_code"] = code if "exit" in status else 128 + status["signal"]
    spool.update(n, finish)
    if "signal" in status:
        # nios kill_self(): bsub ends by the signal that ended the job (not a documented message).
        die_with_signal(status["signal"])
    return code


def _lsf_finish_pending(spool: Spool, n: int) -> None:
    def kill(j):
        j["state"], j["killed"], j["end_time"] = "EXIT", True, time.time()
        j["exit_code"] = 130
    spool.update(n, kill)


def _lsf_reap(spool: Spool, job: dict) -> dict:
    """Bring JOB's state up to date: a client that died without cleaning up ended its job."""
    if job["state"] in ("PEND", "RUN") and client_gone(job):
        if not may_control(job):  # someone else's: show it as over, leave the cleaning to its owner
            return {**job, "state": "EXIT", "end_time": job.get("end_time") or time.time()}
        end_processes(job)
        def gone(j):
            j["state"], j["end_time"], j["client"] = "EXIT", time.time(), None
        job = spool.update(job["id"], gone) or job
    return job


def _lsf_jobs(spool: Spool) -> list[dict]:
    jobs = []
    for job in spool.all():
        if job["state"] in ("DONE", "EXIT") and time.time() - job.get("end_time", 0) > LSF_CLEAN_PERIOD:
            with contextlib.suppress(OSError):
                spool.remove(job["id"])
            continue
        try:
            jobs.append(_lsf_reap(spool, job))
        except OSError:
            jobs.append(job)
    return jobs


def bkill(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        _fixture_help("bkill", "IBM LSF / OpenLava bkill", "bkill [-s signal] JOBID...")
        return 0
    if "-V" in args:
        err("rik emulator of LSF bkill (TEST FIXTURE), no version\n")
        return 0

    def usage():
        err("Usage: bkill [-h] [-V] [-l] [-m host_name] [-q queue_name]\n"
            "               [-u user_name | -u all] [0] [-r | -s sigval] [-J job_name] \n"
            "               [jobId | \"jobId[index_list]\"]...\n")
        sys.exit(LSF_FAILED)
    opts, ids = _getopt("bkill", args, "VhkSlq:u:m:p:rfs:J:n:ad", usage)
    sig = None
    for o, v in opts:
        if o == "-s":
            name = v.upper().removeprefix("SIG")
            sig = int(v) if v.isdigit() else getattr(signal, "SIG" + name, None)
            if sig is None:
                err(f"{v}: Illegal signal value\n")
                return LSF_FAILED
        elif o == "-l":
            out("HUP INT QUIT ILL TRAP ABRT EMT FPE KILL BUS SEGV SYS PIPE ALRM TERM URG STOP TSTP CONT "
                "CHLD TTIN TTOU IO XCPU XFSZ VTALRM PROF WINCH LOST USR1 USR2\n")
            return LSF_FAILED
    if not ids:
        err("Job ID or one of '-m', '-u' '-q' and '-J' must be specified.\n")
        usage()
    spool = Spool("lsf", "bkill")
    spool.check()
    failed = signaled = False
    for text in ids:
        n = int(text) if text.isdigit() else None
        job = spool.load(n) if n is not None else None
        if n is None:
            err(f"{text}: Illegal job ID.\n")
            failed = True
            continue
        if job is not None:
            job = _lsf_reap(spool, job)
        if job is None:
            err(f"Job <{n}>: No matching job found\n")
            failed = True
        elif not may_control(job):
            err(f"Job <{n}>: User permission denied\n")
            failed = True
        elif job["state"] in ("DONE", "EXIT"):
            err(f"Job <{n}>: Job has already finished\n")
            failed = True
        elif sig is not None and sig != signal.SIGKILL:
            if job["state"] == "PEND":
                err(f"Job <{n}>: Job has not started yet\n")
                failed = True
                continue
            cmd = job.get("cmd")
            if ref_alive(cmd):
                with contextlib.suppress(OSError):
                    os.killpg(int(cmd["pid"]), sig)
            out(f"Job <{n}> is being signaled\n")
            signaled = True
        else:
            _lsf_kill(spool, job)
            out(f"Job <{n}> is being terminated\n")
            signaled = True
    return 0 if signaled and not failed else LSF_FAILED


def _lsf_kill(spool: Spool, job: dict) -> None:
    n = job["id"]
    if job["state"] == "PEND":
        with spool.lock():
            cur = spool.load(n)
            if cur is not None and cur["state"] == "PEND":
                cur["state"], cur["killed"], cur["end_time"] = "EXIT", True, time.time()
                cur["exit_code"] = 130
                spool.save(cur)
                return
        job = spool.load(n) or job
    job = spool.update(n, lambda j: j.__setitem__("killed", True)) or job
    # sbatchd signals the job: its supervisor on the node runs SIGINT, SIGTERM, SIGKILL on it.
    signal_ref(job.get("shell"), signal.SIGTERM)
    if not job.get("shell"):
        signal_ref(job.get("ssh"), signal.SIGTERM)
    deadline = time.time() + 8
    while time.time() < deadline and ref_alive(job.get("shell")):
        time.sleep(0.05)
    kill_tree(job.get("shell"))
    deadline = time.time() + 5
    while time.time() < deadline and ref_alive(job.get("client")):
        cur = spool.load(n)
        if cur is None or cur["state"] in ("DONE", "EXIT"):
            break
        time.sleep(0.05)
    cur = spool.load(n)
    if cur is not None and cur["state"] not in ("DONE", "EXIT") and not ref_alive(cur.get("client")):
        spool.update(n, lambda j: j.update(state="EXIT", end_time=time.time(), client=None))


BJOBS_FIELDS = {"jobid": "JOBID", "id": "JOBID", "stat": "STAT", "user": "USER", "queue": "QUEUE",
                "from_host": "FROM_HOST", "exec_host": "EXEC_HOST", "job_name": "JOB_NAME",
                "name": "JOB_NAME", "submit_time": "SUBMIT_TIME", "start_time": "START_TIME",
                "finish_time": "FINISH_TIME", "nexec_host": "NEXEC_HOST", "slots": "SLOTS",
                "exit_code": "EXIT_CODE", "command": "COMMAND", "cmd": "COMMAND", "proj": "PROJ_NAME",
                "project": "PROJ_NAME", "nreq_slot": "NREQ_SLOT", "pids": "PIDS"}


def _bjobs_value(job: dict, field: str) -> str:
    running = job["state"] != "PEND"
    node = job.get("node")
    return {
        "JOBID": str(job["id"]), "STAT": job["state"], "USER": job["owner"], "QUEUE": job["queue"],
        "FROM_HOST": SERVER,
        "EXEC_HOST": (node if job["ncpus"] == 1 else f"{job['ncpus']}*{node}") if running and node else "-",
        "JOB_NAME": job["name"], "SUBMIT_TIME": _lsf_time(job["submit_time"]),
        "START_TIME": _lsf_time(job.get("start_time")), "FINISH_TIME": _lsf_time(job.get("end_time")),
        "NEXEC_HOST": "1" if running and node else "-", "SLOTS": str(job["ncpus"]),
        "NREQ_SLOT": str(job["ncpus"]), "EXIT_CODE": str(job.get("exit_code", "-")) if job["state"] == "EXIT"
        else "-", "COMMAND": job["command"], "PROJ_NAME": job["options"].get("-P", "default"),
        "PIDS": str(job["cmd"]["pid"]) if job.get("cmd") and job["state"] == "RUN" else "-",
    }[field]


def _trunc(text: str, width: int) -> str:
    # bjobs' TRUNC_STR: too long -> "*" and the last width-1 characters
    return text if len(text) <= width else "*" + text[len(text) - width + 1:]


def bjobs(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        _fixture_help("bjobs", "IBM LSF / OpenLava bjobs", "bjobs [-a] [-w] [-noheader] [-o fmt] [JOBID...]")
        return 0
    if "-V" in args:
        err("rik emulator of LSF bjobs (TEST FIXTURE), no version\n")
        return 0
    noheader = wide = False
    fmt = None
    rest = []
    i = 0
    while i < len(args):  # -noheader and -o are IBM's long single-dash options: take them out first
        if args[i] == "-noheader":
            noheader = True
        elif args[i] == "-o" and i + 1 < len(args):
            fmt = args[i + 1]
            i += 1
        elif args[i] == "-json":
            pass
        else:
            rest.append(args[i])
        i += 1

    def usage():
        err("Usage: bjobs [-h] [-V] [-w |-l] [-a] [-d] [-p] [-s] [-r] [-g jobgroup_name]\n"
            "             [-A] [-m host_name] [-q queue_name] [-u user_name | -u all]"
            "                     [-P project_name] [-N host_spec] [-J name_spec] [-UF]\n"
            "             [jobId | \"jobId[idxList]\" ...]\n")
        sys.exit(LSF_FAILED)
    opts, ids = _getopt("bjobs", rest, "VladpsrwWRAhJ:q:u:m:N:P:SU:g:", usage)
    flags = {o for o, _ in opts}
    wide = bool(flags & {"-w", "-W"})
    user = next((v for o, v in opts if o == "-u"), None)
    queue = next((v for o, v in opts if o == "-q"), None)
    spool = Spool("lsf", "bjobs")
    spool.check()
    jobs = _lsf_jobs(spool)
    rc = 0
    if ids:
        picked = []
        for text in ids:
            found = [j for j in jobs if text.isdigit() and j["id"] == int(text)]
            if not found:
                err(f"Job <{text}> is not found\n")
                rc = LSF_FAILED
            picked += found
        jobs = picked
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        if user != "all":
            jobs = [j for j in jobs if j["owner"] == (user or me)]
        if queue:
            jobs = [j for j in jobs if j["queue"] == queue]
        want = set()
        if "-a" in flags:
            want |= {"PEND", "RUN", "DONE", "EXIT"}
        if "-d" in flags:
            want |= {"DONE", "EXIT"}
        if "-p" in flags:
            want |= {"PEND"}
        if "-r" in flags:
            want |= {"RUN"}
        jobs = [j for j in jobs if j["state"] in (want or {"PEND", "RUN"})]
        if not jobs:
            what = ("No job found" if "-a" in flags else "No DONE/EXIT job found" if "-d" in flags
                    else "No pending job found" if "-p" in flags else "No running job found"
                    if "-r" in flags else "No unfinished job found")
            err(f"{what}{f' in queue <{queue}>' if queue else ''}\n")
            return LSF_FAILED
    if not jobs:
        return LSF_FAILED
    if fmt is not None:
        cols = []
        delim = " "
        for word in fmt.split():
            if word.startswith("delimiter="):
                delim = word.split("=", 1)[1].strip("'\"")[:1] or " "
                continue
            fname, _, width = word.partition(":")
            key = BJOBS_FIELDS.get(fname.lower())
            if key is None:
                err(f"Unknown field name <{fname}>\n")  # guess
                return LSF_FAILED
            w = width.lstrip("-")
            cols.append((key, int(w) if w.isdigit() else None, width.startswith("-")))

        def cell(text, w, right):
            if w is None:
                return text
            text = _trunc(text, w) if w and len(text) > w else text
            return text.rjust(w) if right else text.ljust(w)
        if not noheader:
            out(delim.join(cell(k, w, r) for k, w, r in cols).rstrip() + "\n")
        for job in jobs:
            out(delim.join(cell(_bjobs_value(job, k), w, r) for k, w, r in cols).rstrip() + "\n")
        return rc
    if not noheader:
        out("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME\n")
    for job in jobs:
        node = job.get("node") if job["state"] != "PEND" else None
        exec_host = node or ""
        if job["state"] != "PEND" and not node:
            exec_host = "   -   "
        name = job["name"]
        if wide:
            shown = exec_host if not node or job["ncpus"] == 1 else f"{job['ncpus']}*{node}"
            out(f"{job['id']:<7} {job['owner']:<7} {job['state']:<5} {job['queue']:<10} {SERVER:<11} "
                f"{shown:<11} {name:<10} {_lsf_time(job['submit_time'])}\n")
            continue
        out(f"{job['id']:<7} {job['owner']:<7.7} {job['state']:<5.5} {job['queue']:<10.10} {SERVER:<11.11} "
            f"{exec_host:<11.11} {_trunc(name, 10):<10.10} {_lsf_time(job['submit_time'])}\n")
        for _ in range(1, job["ncpus"] if node else 1):
            out(f"{'':45}{node}\n")
    return rc


# ---------------------------------------------------------------------------------------------- cleanup
def cleanup(args: list[str]) -> int:
    """emulators.sh down (root): end every emulated job's processes by the pids in the spool."""
    for flavor in ("pbs", "lsf"):
        spool = Spool(flavor, "cleanup")
        for job in spool.all():
            if any(ref_alive(job.get(k)) for k in ("shell", "ssh", "client")):
                end_processes(job)
                print(f"rik emulators: ended {flavor} job {job['id']} ({job['owner']})", file=sys.stderr)
    return 0


COMMANDS = {"qsub": qsub, "qdel": qdel, "qstat": qstat, "bsub": bsub, "bkill": bkill, "bjobs": bjobs,
            "jobshell": jobshell, "cleanup": cleanup}


def main(prog: str, args: list[str]) -> int:
    try:
        return COMMANDS[prog](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(COMMANDS)}}} ARGS  (rik test fixture)")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
