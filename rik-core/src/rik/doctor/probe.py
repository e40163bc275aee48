"""Running doctor's probes: here, or on a host through doctor's own ssh connections with the kernel's settings.

Doctor logs in once per host, with masters of its own made fresh for each run, never the masters running kernels
share (so it sees the hosts' sshd configuration as it is now); each probe has a short time limit. rik's own ssh
settings (the file that ``SSHTransport`` writes, with the kernel's ``--ssh-config``, ``~/.ssh/config`` and
askpass) are used through ``-F``.
"""

from __future__ import annotations

import base64
import os
import secrets
import select
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Endpoint
from ..ssh import SSHTransport

__all__ = [
    "CHECK_TIMEOUT",
    "CONNECT_TIMEOUT",
    "KERNEL_TIMEOUT",
    "Done",
    "Remote",
    "exec_script",
    "kernel_probe",
    "kill_group",
    "login_script",
    "program_script",
    "run",
]

CONNECT_TIMEOUT = 5  # seconds for each ssh hop to answer
CHECK_TIMEOUT = 15.0  # seconds for one check
KERNEL_TIMEOUT = 30.0  # seconds for the kernel's program to start and import its package
# The test listener for Unix-socket forwarding, run by the kernel's Python on the kernel's host: a private
# directory, one socket, one answer, gone when the answer is sent, after 20 s, or when its ssh session ends.
_LISTENER_ANSWER = b"rik-doctor-ok"
_LISTENER = """
import os, socket, sys, time
d = sys.argv[1]
os.mkdir(d, 0o700)
p = os.path.join(d, "s")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(p)
    s.listen(1)
    s.settimeout(0.2)
    sys.stdout.write("RIK-DOCTOR-LISTEN\\n")
    sys.stdout.flush()
    parent, end = os.getppid(), time.time() + 20
    while time.time() < end and os.getppid() == parent:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.sendall(b"rik-doctor-ok")
        c.close()
        break
finally:
    s.close()
    try:
        os.unlink(p)
    except OSError:
        pass
    os.rmdir(d)
"""


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    timed_out: bool = False

    def last_line(self) -> str:
        lines = [line.strip() for line in self.out.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


def run(argv: Sequence[str], *, env: dict[str, str] | None, timeout: float, stdin: str | None = None) -> Done:
    """Run ``argv`` in a session of its own (no terminal: ssh can never prompt); on timeout the whole group goes."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return Done(127, f"{argv[0]}: {exc.strerror or exc}")
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
        return Done(proc.returncode, out or "")
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        return Done(-1, out or "", timed_out=True)


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with suppress(OSError):
        os.killpg(proc.pid, sig)
    with suppress(OSError):
        proc.kill()


class Remote:
    """Doctor's connections, one login per host. Where running kernels share a master to a hop, doctor rides it:
    a new kernel would ride that same connection, and a site that asks for a code at every login asks nothing more.
    Elsewhere doctor makes a master of its own for the hop, fresh for this run (it sees the hop's sshd as a new
    connection does). Hop ``i`` is reached through hop ``i-1``'s master (``-W``), and every check on a hop rides
    the hop's master.

    sshd's reason for refusing a channel ("administratively prohibited") reaches only the master's own standard
    error: doctor's own masters write it to a file, the kernels' masters to nowhere rik reads. So on a shared
    master the forwarding checks ask for something that answers (the next hop's sshd, a test socket); only when
    that fails does doctor log in on its own to learn why (:meth:`own`)."""

    def __init__(self, transport: SSHTransport, workdir: Path) -> None:
        self.transport = transport
        self.dir = workdir
        self.config = workdir / "ssh.conf"
        # ssh keeps the first value it reads for an option: these come before the kernel's own settings.
        self.config.write_text(
            "# rik doctor: its own connections and short time limits, then the kernel's ssh settings.\n"
            "ControlMaster no\nControlPath none\n"
            f"ConnectTimeout {CONNECT_TIMEOUT}\n"
            f'Include "{transport.config_path}"\n'
        )
        self.env = transport.env()
        self.masters: list[subprocess.Popen[Any]] = []
        self.shared: dict[int, Path] = {}  # hops whose kernels' master doctor rides

    def base(self) -> list[str]:
        return [self.transport.program, "-F", str(self.config)]

    def _path(self, i: int) -> Path:
        return self.shared.get(i) or self.dir / f"m{i}"

    def _log(self, i: int) -> Path:
        return self.dir / f"m{i}.log"

    def _ride(self, i: int) -> list[str]:
        """Options of a client of hop ``i``'s master: it never logs in on its own."""
        return ["-o", "ControlMaster=no", "-o", f"ControlPath={self._path(i)}", "-o", "ProxyCommand=false"]

    def _to(self, host: Endpoint, before: Sequence[Endpoint]) -> list[str]:
        """ssh options and destination for ``host``, reached through the master of the hop before it."""
        if not before:
            return self.transport.destination(host, ())
        i = len(before)
        hop = [*self.base(), *self._ride(i - 1), "-W", "%h:%p", *self.transport.destination(before[-1], ())]
        return ["-o", f"ProxyCommand={shlex.join(hop)}", *self.transport.destination(host, ())]

    def _heard(self, i: int, since: int) -> str:
        """What hop ``i``'s master wrote since ``since`` bytes: sshd's answers to its clients' channels."""
        with suppress(OSError), open(self._log(i), "rb") as fh:
            fh.seek(since)
            return fh.read().decode(errors="replace")
        return ""

    def _size(self, i: int) -> int:
        with suppress(OSError):
            return self._log(i).stat().st_size
        return 0

    def login(self, host: Endpoint, before: Sequence[Endpoint]) -> Done:
        """Ride the master running kernels share to ``host``, else log in once (doctor's own master); then run
        ``true`` through it."""
        i = len(before)
        path = self.transport.control_path(host)
        from ..sshlogin import master_up

        if path is not None and master_up(path):
            self.shared[i] = Path(path)
            done = self._true(host, before)
            if done.code == 0:
                return done
            del self.shared[i]  # a master that is going away: log in as a new kernel would
        return self.own(host, before)

    def rides_shared(self, before: Sequence[Endpoint]) -> bool:
        """Whether the checks of the hop after ``before`` ride the master running kernels share."""
        return len(before) in self.shared

    def _true(self, host: Endpoint, before: Sequence[Endpoint]) -> Done:
        argv = [*self.base(), *self._ride(len(before)), "-T", *self._to(host, before), "true"]
        return run(argv, env=self.env, timeout=CHECK_TIMEOUT)

    def own(self, host: Endpoint, before: Sequence[Endpoint]) -> Done:
        """Log in to ``host`` with a master of doctor's own (its messages go to a file), then run ``true``."""
        i = len(before)
        self.shared.pop(i, None)
        path = self._path(i)
        argv = [
            *self.base(),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPath={path}",
            "-o",
            "ControlPersist=no",
            "-o",
            "LogLevel=INFO",
            "-N",
            "-T",
            *self._to(host, before),
        ]
        with open(self._log(i), "wb") as log:
            try:
                master = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env, start_new_session=True
                )
            except OSError as exc:
                return Done(127, f"{argv[0]}: {exc.strerror or exc}")
        deadline = time.monotonic() + CHECK_TIMEOUT
        while not path.exists() and master.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if not path.exists():
            timed_out = master.poll() is None
            if timed_out:
                kill_group(master)
            master.wait()
            return Done(-1 if timed_out else master.returncode, self._heard(i, 0), timed_out=timed_out)
        self.masters.append(master)  # only a master that is up: close() signals no pid that was already reaped
        return self._true(host, before)

    def tcp_forwarding(self, host: Endpoint, before: Sequence[Endpoint], onwards: Endpoint | None = None) -> Done:
        """What ``ssh -J`` asks every jump host for: a TCP connection onwards. On doctor's own master: to a closed
        local port, and sshd's words tell "connect failed" (forwarding works) from "administratively prohibited".
        On a shared master, which tells doctor nothing: to the sshd of ``onwards`` (the next hop; else ``host``'s
        own), whose greeting says forwarding works; a missing greeting says only that something failed."""
        i = len(before)
        if i in self.shared:
            sshd = onwards or host
            seen = self.transport.resolved(sshd)  # aliases and HostName resolved, as ssh reaches it
            name = seen.get("hostname") or sshd.host.rpartition("@")[2]
            port = seen.get("port") or str(sshd.port or 22)
            argv = [*self.base(), *self._ride(i), "-W", f"{name}:{port}", *self._to(host, before)]
            return run(argv, env=self.env, timeout=CHECK_TIMEOUT)
        since = self._size(i)
        argv = [*self.base(), *self._ride(i), "-o", "LogLevel=INFO", "-W", "127.0.0.1:1", *self._to(host, before)]
        done = run(argv, env=self.env, timeout=CHECK_TIMEOUT)
        return Done(done.code, done.out + self._heard(i, since), done.timed_out)

    def unix_forwarding(self, host: Endpoint, before: Sequence[Endpoint], python: str, precmd: str | None) -> str:
        """What the tunnel asks the kernel's host for: a local socket forwarded to a remote Unix socket.

        sshd answers a refused Unix-socket forward and a missing socket alike ("connect failed"), so the remote end
        must exist: the kernel's Python listens on a socket in a new private directory for the time of the test,
        in the session of the very connection that forwards to it. Returns allowed, prohibited, or what happened.
        """
        i = len(before)
        since = self._size(i)
        local = self.dir / "u"
        with suppress(OSError):
            local.unlink()
        remote = f"/tmp/rikdoctor-{secrets.token_hex(6)}"  # not rik-*: that is the bootstrap's
        code = base64.b64encode(_LISTENER.encode()).decode()
        listener = [python, "-c", f"import base64; exec(base64.b64decode('{code}'))", remote]
        argv = [
            *self.base(),
            *self._ride(i),
            "-o",
            "LogLevel=INFO",
            "-T",
            "-L",
            f"{local}:{remote}/s",
            *self._to(host, before),
            "/bin/sh -s",
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        answer = b""
        output = b""
        try:
            with suppress(OSError):
                proc.stdin.write(login_script(precmd, "exec " + shlex.join(listener)).encode())
            with suppress(OSError):
                proc.stdin.close()
            proc.stdin = None  # closed: communicate() below must not flush it
            deadline = time.monotonic() + CHECK_TIMEOUT
            while b"RIK-DOCTOR-LISTEN" not in output and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.1)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    output += chunk
            while b"RIK-DOCTOR-LISTEN" in output and not local.exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # the forward is set up once the master has it
            if b"RIK-DOCTOR-LISTEN" in output and local.exists():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(5)
                    with suppress(OSError):
                        probe.connect(str(local))
                        while len(answer) < len(_LISTENER_ANSWER):
                            chunk = probe.recv(64)  # closed at once by ssh when sshd refuses the channel
                            if not chunk:
                                break
                            answer += chunk
        finally:
            kill_group(proc, signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                _, err = proc.communicate()
            # The forward was the master's: it goes with this check.
            cancel = [
                *self.base(),
                *self._ride(i),
                "-O",
                "cancel",
                "-L",
                f"{local}:{remote}/s",
                *self._to(host, before),
            ]
            run(cancel, env=self.env, timeout=CHECK_TIMEOUT)
        errors = (err or b"").decode(errors="replace") + self._heard(i, since)
        if answer == _LISTENER_ANSWER:
            return "allowed"
        if b"RIK-DOCTOR-LISTEN" not in output:
            said = Done(1, (output + (err or b"")).decode(errors="replace")).last_line()
            return f"not tested: {python} could not listen on a test socket ({said})"
        if "open failed" in errors:
            return "prohibited"
        return f"no answer ({Done(1, errors).last_line()})"

    def close(self) -> None:
        """End doctor's masters, the last hop's first (each rides the one before it)."""
        for master in reversed(self.masters):
            kill_group(master, signal.SIGTERM)
            try:
                master.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(master)
                master.wait()
        self.masters = []

    def script(self, host: Endpoint, before: Sequence[Endpoint], text: str, timeout: float) -> Done:
        """Run a POSIX sh script on ``host``, sent on standard input (as rik sends its bootstrap)."""
        argv = [*self.base(), *self._ride(len(before)), "-T", *self._to(host, before), "/bin/sh -s"]
        return run(argv, env=self.env, timeout=timeout, stdin=text)


def program_script(program: str) -> str:
    return f"command -v {shlex.quote(program)} || exit 127\n"


def exec_script(argv: Sequence[str]) -> str:
    return f"exec {shlex.join(argv)} </dev/null 2>&1\n"


def login_script(precmd: str | None, command: str) -> str:
    """Run ``command`` in the user's login shell after the pre-command, as the bootstrap runs the kernel."""
    text = f"{precmd}\n{command}" if precmd else command
    return (
        f"rik_cmd={shlex.quote(text)}\n"
        'case ${SHELL:-/bin/sh} in *csh) rik_login="";; *) rik_login=-l;; esac\n'
        'exec "${SHELL:-/bin/sh}" $rik_login -c "$rik_cmd" </dev/null 2>&1\n'
    )


def kernel_probe(words: Sequence[str]) -> tuple[list[str] | None, str]:
    """A command that starts the kernel's program and loads its kernel package, without starting a kernel."""
    program = words[0]
    if len(words) >= 3 and words[1] == "-m" and words[2].startswith("ipykernel"):
        return [program, "-c", "import ipykernel"], "ipykernel"
    base = program.rsplit("/", 1)[-1]
    if any("IRkernel" in w for w in words) and base in ("R", "Rscript"):
        code = "library(IRkernel)"
        return ([program, "--slave", "-e", code] if base == "R" else [program, "-e", code]), "IRkernel"
    return None, ""
