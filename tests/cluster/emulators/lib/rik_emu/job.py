"""A job's two ends: ``jobshell``, its supervisor on the node (an execution daemon in miniature), and the
interactive client (``bsub -Is``) that waits while the job queues, starts it and relays the terminal."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getopt
import json
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import tty

from .base import (
    EMU_NOTE,
    LIB,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    PYTHON,
    QUEUE_DELAY,
    Spool,
    client_gone,
    descendants,
    die_with_signal,
    end_processes,
    err,
    kill_tree,
    out,
    prctl,
    proc_ref,
    signal_ref,
    winsize,
    write_all,
)


def jobshell(argv: list[str]) -> int:
    """Supervisor of one job on the compute node (started by the client as ``ssh -tt NODE python3
    rik_emulator.py jobshell FLAVOR N``): the job's pty is its controlling terminal.

    It registers itself in the job file, runs the job's command (LSF:
    ``/bin/sh -c COMMAND``) in the foreground of the pty, and when that command ends -- or when it is
    told to end the job (SIGTERM: bkill/client; SIGHUP: the connection to the client is gone) --
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

    # End the job: everything under us goes.  LSF (bkill): SIGINT, SIGTERM, SIGKILL, JOB_TERMINATE_INTERVAL
    # apart (intervals shortened here); another flavour: SIGTERM, SIGKILL after a kill delay.
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
    """The interactive client (bsub -Is): waits while the job queues, starts it on a node
    over ``ssh -tt`` and relays the terminal.  The local terminal is put in raw mode while the job
    runs (like LSF's nios); the remote pty does echo and line editing."""

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
