"""``rik doctor``: check a kernel's setup step by step, one line per check: ok, or the problem and how to fix it.

For each rik kernel (all, or those named) it checks, in the order a kernel needs them:

1. the plugin of its interface is installed and builds the job's command;
2. the ssh chain hop by hop: the host is reachable from the hop before it, its host key is known, and the login
   works without a prompt (or with the kernel's askpass program);
3. that each hop allows the forwarding rik needs there: TCP to reach the next hop (``ssh -J`` and the tunnel to a
   job's node), Unix sockets (or TCP) on the kernel's own host, tried for real and recognising sshd's
   "administratively prohibited";
4. on the submit host (or the kernel's host): the scheduler's programs exist, the queue/partition, parallel
   environment or account exist (for schedulers doctor knows how to ask), the login shell starts with the
   pre-command, the kernel's program exists there and starts (``import ipykernel``), the working directory exists.

Every connection is a fresh one that does not touch the masters running kernels share (so it sees the hosts' sshd
configuration as it is now); each check has a short time limit. rik's own ssh settings (the file that
``SSHTransport`` writes, with the kernel's ``--ssh-config``, ``~/.ssh/config`` and askpass) are used through ``-F``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .config import Endpoint, KernelConfig
from .errors import RikError
from .helpers import sibling_program
from .kernelspecs import InstalledKernel, find_kernels, is_rik, lookup
from .models import Allocation, LaunchCommand, SchedulerInfo
from .plugins import PluginHost
from .ssh import SSHSettings, SSHTransport, explain_ssh_failure

__all__ = ["Check", "Report", "diagnose", "doctor"]

OK, PROBLEM, SKIPPED = "ok", "problem", "skipped"
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
class Check:
    """One step: ``status`` is ok, problem or skipped; ``fix`` says what to do about a problem."""

    check: str
    where: str
    status: str
    message: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "where": self.where,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }

    def line(self) -> str:
        label = {OK: "ok", PROBLEM: "PROBLEM", SKIPPED: "skipped"}[self.status]
        text = f"  {label:<8} {self.message}"
        return text + (f" -> fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    kernel: str
    display_name: str
    path: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != PROBLEM for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "display_name": self.display_name,
            "path": self.path,
            "ok": self.ok,
            "checks": [c.as_json() for c in self.checks],
        }


# -------------------------------------------------------------------------------------------------------------
# Queue, partition, parallel environment and account: how each scheduler is asked (argv on the submit host)
# -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """``argv`` (``{}`` = the value) succeeds with output when the value exists; ``missing`` recognises a refusal;
    ``listing`` prints the values that do exist, for the fix."""

    what: str
    argv: tuple[str, ...]
    missing: Callable[[int, str], bool]
    listing: tuple[str, ...] = ()
    empty_is_missing: bool = False


def _says(*needles: str) -> Callable[[int, str], bool]:
    return lambda code, out: code != 0 and any(n.lower() in out.lower() for n in needles)


_SGE = {
    "queue": Query("queue", ("qconf", "-sq", "{}"), _says("No cluster queue", "does not exist"), ("qconf", "-sql")),
    "pe": Query(
        "parallel environment", ("qconf", "-sp", "{}"), _says("is not a parallel environment"), ("qconf", "-spl")
    ),
}
QUERIES: dict[str, dict[str, Query]] = {
    "slurm": {
        "queue": Query(
            "partition",
            ("sinfo", "-h", "-o", "%P", "-p", "{}"),
            lambda code, out: code == 0 and not out.strip(),
            ("sinfo", "-h", "-o", "%P"),
            empty_is_missing=True,
        ),
        "account": Query(
            "account",
            ("sacctmgr", "-n", "-P", "show", "account", "{}", "format=account"),
            lambda code, out: code == 0 and not out.strip(),
            empty_is_missing=True,
        ),
    },
    "sge": _SGE,
    "sge_qrsh": _SGE,
    "pbs": {"queue": Query("queue", ("qstat", "-Q", "{}"), _says("Unknown queue"))},
    "lsf": {
        "queue": Query("queue", ("bqueues", "{}"), _says("No such queue"), ("bqueues", "-noheader", "-o", "queue_name"))
    },
}


# -------------------------------------------------------------------------------------------------------------
# Running things: here, or on a host through the kernel's ssh settings
# -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    timed_out: bool = False

    def last_line(self) -> str:
        lines = [line.strip() for line in self.out.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


def _run(argv: Sequence[str], *, env: dict[str, str] | None, timeout: float, stdin: str | None = None) -> Done:
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
        _kill_group(proc)
        out, _ = proc.communicate()
        return Done(-1, out or "", timed_out=True)


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with suppress(OSError):
        os.killpg(proc.pid, sig)
    with suppress(OSError):
        proc.kill()


class Remote:
    """Fresh ssh connections with the kernel's settings, never the masters that running kernels share."""

    def __init__(self, transport: SSHTransport, workdir: Path) -> None:
        self.transport = transport
        self.dir = workdir
        self.config = workdir / "ssh.conf"
        # ssh keeps the first value it reads for an option: these come before the kernel's own settings.
        self.config.write_text(
            "# rik doctor: fresh connections and short time limits, then the kernel's ssh settings.\n"
            "ControlMaster no\nControlPath none\n"
            f"ConnectTimeout {CONNECT_TIMEOUT}\n"
            f'Include "{transport.config_path}"\n'
        )
        self.env = transport.env()
        self.master: subprocess.Popen[Any] | None = None
        self.master_path = workdir / "m"

    def base(self) -> list[str]:
        return [self.transport.program, "-F", str(self.config)]

    def login(self, host: Endpoint, before: Sequence[Endpoint]) -> Done:
        argv = [*self.base(), "-T", *self.transport.destination(host, before), "true"]
        return _run(argv, env=self.env, timeout=CHECK_TIMEOUT)

    def tcp_forwarding(self, host: Endpoint, before: Sequence[Endpoint]) -> Done:
        """What ``ssh -J`` asks every jump host for: a TCP connection onwards (here to a closed local port)."""
        argv = [*self.base(), "-o", "LogLevel=INFO", "-W", "127.0.0.1:1", *self.transport.destination(host, before)]
        return _run(argv, env=self.env, timeout=CHECK_TIMEOUT)

    def unix_forwarding(self, host: Endpoint, before: Sequence[Endpoint], python: str, precmd: str | None) -> str:
        """What the tunnel asks the kernel's host for: a local socket forwarded to a remote Unix socket.

        sshd answers a refused Unix-socket forward and a missing socket alike ("connect failed"), so the remote end
        must exist: the kernel's Python listens on a socket in a new private directory for the time of the test,
        in the session of the very connection that forwards to it. Returns allowed, prohibited, or what happened.
        """
        local = self.dir / "u"
        with suppress(OSError):
            local.unlink()
        remote = f"/tmp/rikdoctor-{secrets.token_hex(6)}"  # not rik-*: that is the bootstrap's
        code = base64.b64encode(_LISTENER.encode()).decode()
        listener = [python, "-c", f"import base64; exec(base64.b64decode('{code}'))", remote]
        argv = [
            *self.base(),
            "-o",
            "LogLevel=INFO",
            "-T",
            "-L",
            f"{local}:{remote}/s",
            *self.transport.destination(host, before),
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
                proc.stdin.write(_login_script(precmd, "exec " + shlex.join(listener)).encode())
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
                time.sleep(0.02)  # the forward is set up once ssh has logged in
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
            _kill_group(proc, signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _, err = proc.communicate()
        errors = (err or b"").decode(errors="replace")
        if answer == _LISTENER_ANSWER:
            return "allowed"
        if b"RIK-DOCTOR-LISTEN" not in output:
            said = Done(1, (output + (err or b"")).decode(errors="replace")).last_line()
            return f"not tested: {python} could not listen on a test socket ({said})"
        if "open failed" in errors:
            return "prohibited"
        return f"no answer ({Done(1, errors).last_line()})"

    @contextmanager
    def session(self, host: Endpoint, before: Sequence[Endpoint]) -> Iterator[None]:
        """One master connection for the commands of the checks on ``host`` (falls back to a connection each)."""
        argv = [
            *self.base(),
            "-o",
            "ControlMaster=yes",
            "-o",
            "ControlPersist=no",
            "-o",
            f"ControlPath={self.master_path}",
            "-N",
            "-T",
            *self.transport.destination(host, before),
        ]
        self.master = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + CHECK_TIMEOUT
        while not self.master_path.exists() and self.master.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            yield
        finally:
            _kill_group(self.master, signal.SIGTERM)
            try:
                self.master.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(self.master)
                self.master.wait()
            self.master = None

    def script(self, host: Endpoint, before: Sequence[Endpoint], text: str, timeout: float) -> Done:
        """Run a POSIX sh script on ``host``, sent on standard input (as rik sends its bootstrap)."""
        options = ["-o", f"ControlPath={self.master_path}"] if self.master_path.exists() else []
        argv = [*self.base(), *options, "-T", *self.transport.destination(host, before), "/bin/sh -s"]
        return _run(argv, env=self.env, timeout=timeout, stdin=text)


# -------------------------------------------------------------------------------------------------------------
# The checks
# -------------------------------------------------------------------------------------------------------------


class Doctor:
    """The checks of one kernel, in order; a step that fails skips what depends on it."""

    def __init__(
        self, kernel: InstalledKernel, host: PluginHost, on_check: Callable[[Check], None] | None = None
    ) -> None:
        self.kernel = kernel
        self.plugins = host
        self.on_check = on_check
        self.report = Report(kernel.name, str(kernel.spec.get("display_name", "")), str(kernel.path))

    def add(self, check: str, where: str, status: str, message: str, fix: str | None = None) -> Check:
        result = Check(check, where, status, message, fix)
        self.report.checks.append(result)
        if self.on_check is not None:
            self.on_check(result)
        return result

    def run(self) -> Report:
        config = self.kernel.config
        if config is None:
            self.add(
                "config",
                "here",
                PROBLEM,
                "made by remote_ikernel, not by rik",
                f"convert it with `rik manage --import {self.kernel.name}`",
            )
            return self.report
        scheduler, command, cancel = self.plugin(config)
        submit = config.endpoint()
        chain = config.chain()
        hops = (*chain, submit) if submit else ()
        if not hops:
            self.target_checks(config, scheduler, command, cancel, None, ())
            return self.report
        try:
            transport = SSHTransport(
                SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass)
            )
        except RikError as exc:
            self.add("ssh", "here", PROBLEM, str(exc), "fix the kernel's --ssh-config, or install OpenSSH")
            return self.report
        workdir = Path(tempfile.mkdtemp(prefix="d-", dir=transport.dir))
        try:
            remote = Remote(transport, workdir)
            if self.chain_checks(config, command, remote, hops, transport):
                assert submit is not None
                with remote.session(submit, chain):
                    self.target_checks(config, scheduler, command, cancel, remote, chain)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return self.report

    # -- plugin ----------------------------------------------------------------------------------------------
    def plugin(self, config: KernelConfig) -> tuple[SchedulerInfo | None, LaunchCommand | None, tuple[str, ...]]:
        try:
            scheduler = self.plugins.scheduler(config.interface)
            config.validate(scheduler)
            command = self.plugins.build_launch_command(config.request())
            cancel = self.plugins.build_cancel_command(config.request(), Allocation(job_id="0"))
        except RikError as exc:
            self.add("plugin", "here", PROBLEM, f"interface {config.interface}: {exc}", "see `rik plugins`")
            return None, None, ()
        name = self.plugins.plugin_of(config.interface)
        record = next((r for r in self.plugins.records if r.name == name), None)
        origin = f"{record.distribution} {record.version or ''}".strip() if record and record.distribution else name
        self.add("plugin", "here", OK, f"interface {config.interface} from {origin}")
        return scheduler, command, cancel

    # -- ssh, hop by hop -------------------------------------------------------------------------------------
    def chain_checks(
        self,
        config: KernelConfig,
        command: LaunchCommand | None,
        remote: Remote,
        hops: Sequence[Endpoint],
        transport: SSHTransport,
    ) -> bool:
        """Login and forwarding on every hop; True when the last hop can run commands."""
        how = f"with askpass {transport.askpass_program()}" if transport.askpass_program() else "without a prompt"
        keys = "known" if config.host_keys == "strict" else "known or trusted on first use (--host-keys accept-new)"
        has_job = bool(command and command.argv)
        for i, hop in enumerate(hops):
            before = hops[:i]
            via = f" via {' '.join(str(h) for h in before)}" if before else ""
            done = remote.login(hop, before)
            if done.code != 0:
                self.add("ssh", str(hop), PROBLEM, *_login_problem(hop, before, done))
                self.skip_after(hops[i + 1 :], f"{hop} cannot be reached")
                return False
            self.add("ssh", str(hop), OK, f"ssh {hop}{via}: reachable, host key {keys}, logged in {how}")
            last = i == len(hops) - 1
            if not last:
                needs = "tcp"
                why = f"the way to {hops[i + 1]}"
            elif has_job:
                needs = "tcp"
                why = "the tunnel to the job's node"
            else:
                needs = "unix" if config.effective_transport() == "ipc" else "tcp"
                why = "the tunnel to the kernel"
            if not self.forwarding_check(remote, hop, before, needs, why, last, has_job, config) and not last:
                self.skip_after(hops[i + 1 :], f"{hop} does not forward TCP")
                return False
        return True

    def skip_after(self, hops: Sequence[Endpoint], reason: str) -> None:
        for hop in hops:
            self.add("ssh", str(hop), SKIPPED, f"ssh {hop}: not checked ({reason})")
        self.add("host", "-", SKIPPED, f"commands on the host: not checked ({reason})")

    def forwarding_check(
        self,
        remote: Remote,
        hop: Endpoint,
        before: Sequence[Endpoint],
        needs: str,
        why: str,
        last: bool,
        has_job: bool,
        config: KernelConfig,
    ) -> bool:
        tcp = _forwarding_result(remote.tcp_forwarding(hop, before))
        unix = None
        if last and needs == "unix":
            probe, _package = _kernel_probe(config.kernel_argv())
            python = probe[0] if probe and _package == "ipykernel" else "python3"
            unix = remote.unix_forwarding(hop, before, python, config.precmd)
        results = {"tcp": tcp, "unix": unix}
        names = {"tcp": "TCP", "unix": "Unix-socket"}
        needed = results[needs]
        parts = [f"{names[k]} {v}" for k, v in results.items() if v is not None]
        summary = f"forwarding on {hop}: {', '.join(parts)}"
        need = f"{names[needs]} needed for {why}"
        if needed == "prohibited":
            option = "AllowTcpForwarding" if needs == "tcp" else "AllowStreamLocalForwarding"
            self.add(
                "forwarding",
                str(hop),
                PROBLEM,
                f"{summary} ({need}; sshd said 'administratively prohibited')",
                f"ask the administrators of {hop} to allow it ({option} yes in sshd_config)"
                + ("" if needs == "tcp" else ", or make the kernel with --transport tcp"),
            )
            return False
        if needed != "allowed":
            self.add("forwarding", str(hop), SKIPPED, f"{summary} ({need}: could not tell)")
            return True
        note = "; the job's node is checked when a kernel starts" if last and has_job else ""
        self.add("forwarding", str(hop), OK, f"{summary} ({need}{note})")
        return True

    # -- on the submit host (or the kernel's host, or this machine) ------------------------------------------
    def target_checks(
        self,
        config: KernelConfig,
        scheduler: SchedulerInfo | None,
        command: LaunchCommand | None,
        cancel: tuple[str, ...],
        remote: Remote | None,
        chain: Sequence[Endpoint],
    ) -> None:
        submit = config.endpoint()
        where = str(submit) if submit else "this machine"
        has_job = bool(command and command.argv)

        def run(script: str, timeout: float = CHECK_TIMEOUT) -> Done:
            if remote is not None and submit is not None:
                return remote.script(submit, chain, script, timeout)
            return _run(["/bin/sh", "-s"], env=dict(os.environ), timeout=timeout, stdin=script)

        if command and command.argv and scheduler is not None:
            for role, argv in (("scheduler", command.argv), ("cancel", cancel)):
                if not argv:
                    continue
                done = run(_program_script(argv[0]))
                if done.code == 0:
                    self.add(role, where, OK, f"{role} command {argv[0]} on {where}: {done.last_line()}")
                elif done.timed_out:
                    self.add(role, where, PROBLEM, f"{role} command {argv[0]} on {where}: no answer", None)
                else:
                    self.add(
                        role,
                        where,
                        PROBLEM,
                        f"{role} command {argv[0]} not found on {where}",
                        "make it available in the PATH of non-interactive ssh sessions there, or give its full path "
                        "with --launch-cmd",
                    )
            self.resource_checks(config, run, where)
        self.shell_check(config, run, where)
        self.kernel_checks(config, run, where, has_job)
        self.workdir_check(config, run, where)

    def resource_checks(self, config: KernelConfig, run: Callable[[str], Done], where: str) -> None:
        queries = QUERIES.get(config.interface, {})
        for option, value in config.resources.given().items():
            if option not in ("queue", "pe", "account"):
                continue
            query = queries.get(option)
            if query is None:
                self.add(
                    option, where, SKIPPED, f"--{option} {value}: rik doctor cannot ask {config.interface} about it"
                )
                continue
            argv = [
                sibling_program(config.launch_cmd, query.argv[0]),
                *(a.replace("{}", str(value)) for a in query.argv[1:]),
            ]
            done = run(_exec_script(argv))
            label = f"{query.what} {value} on {where}"
            if done.code == 0 and (done.out.strip() or not query.empty_is_missing):
                self.add(option, where, OK, f"{label}: exists")
            elif not done.timed_out and query.missing(done.code, done.out):
                known = ""
                if query.listing:
                    listing = [sibling_program(config.launch_cmd, query.listing[0]), *query.listing[1:]]
                    names = run(_exec_script(listing))
                    if names.code == 0 and names.out.strip():
                        known = f"one of: {', '.join(names.out.replace('*', '').split()[:12])}"
                self.add(
                    option,
                    where,
                    PROBLEM,
                    f"{label}: does not exist ({shlex.join(argv)}: {done.last_line() if done.out.strip() else 'nothing'})",
                    f"make the kernel again with --{option} {known or 'NAME'} (rik manage --add ... --replace)",
                )
            else:
                self.add(option, where, SKIPPED, f"{label}: could not check ({shlex.join(argv)}: {done.last_line()})")

    def shell_check(self, config: KernelConfig, run: Callable[[str], Done], where: str) -> None:
        done = run(_login_script(config.precmd, "true"))
        what = "login shell" + (" with the pre-command" if config.precmd else "")
        if done.code == 0:
            self.add("shell", where, OK, f"{what} starts on {where}")
        elif done.timed_out:
            self.add(
                "shell",
                where,
                PROBLEM,
                f"{what} on {where} did not finish within {CHECK_TIMEOUT:g} s",
                "a startup file (~/.profile, ~/.bash_profile...) or --remote-precmd waits for input or hangs",
            )
        else:
            self.add(
                "shell",
                where,
                PROBLEM,
                f"{what} fails on {where}: {done.last_line()}",
                "fix the startup files (~/.profile, ~/.bash_profile...) there"
                + (" or --remote-precmd" if config.precmd else ""),
            )

    def kernel_checks(self, config: KernelConfig, run: Callable[..., Done], where: str, has_job: bool) -> None:
        note = " (the submit host: the job's node normally has the same software)" if has_job else ""
        words = config.kernel_argv()
        program = words[0]
        probe_cmd = shlex.join(["/bin/sh", "-c", 'command -v "$1" || exit 127', "rik-doctor", program])
        done = run(_login_script(config.precmd, f"exec {probe_cmd}"))
        if done.code != 0:
            self.add(
                "kernel",
                where,
                PROBLEM,
                f"kernel program {program} not found on {where}{note} in the login shell"
                + (" after the pre-command" if config.precmd else ""),
                "install it there, give its full path in --kernel-cmd, or load it with --remote-precmd",
            )
            return
        self.add("kernel", where, OK, f"kernel program {program} on {where}{note}: {done.last_line()}")
        probe, package = _kernel_probe(words)
        if probe is None:
            self.add(
                "kernel-start", where, SKIPPED, f"{program} starts: not checked (rik tests ipykernel and IRkernel)"
            )
            return
        done = run(_login_script(config.precmd, "exec " + shlex.join(probe)), KERNEL_TIMEOUT)
        if done.code == 0:
            self.add("kernel-start", where, OK, f"{program} starts and loads {package} on {where}")
        else:
            reason = f"no answer within {KERNEL_TIMEOUT:g} s" if done.timed_out else done.last_line()
            self.add(
                "kernel-start",
                where,
                PROBLEM,
                f"{program} cannot load {package} on {where}: {reason}",
                f"install {package} for that {program} (or point --kernel-cmd at one that has it)",
            )

    def workdir_check(self, config: KernelConfig, run: Callable[[str], Done], where: str) -> None:
        if not config.workdir:
            done = run("cd && pwd")
            home = done.last_line() if done.code == 0 else "your home"
            self.add(
                "workdir",
                where,
                OK,
                f"no --workdir: the kernel starts in the notebook server's directory if {where} has it, else in {home}",
            )
            return
        done = run(f"cd {shlex.quote(config.workdir)}")
        if done.code == 0:
            self.add("workdir", where, OK, f"working directory {config.workdir} exists on {where}")
        else:
            self.add(
                "workdir",
                where,
                PROBLEM,
                f"working directory {config.workdir} does not exist on {where} (or is not yours to enter)",
                "create it there, or make the kernel again with another --workdir",
            )


def _login_problem(hop: Endpoint, before: Sequence[Endpoint], done: Done) -> tuple[str, str | None]:
    via = f" via {' '.join(str(h) for h in before)}" if before else ""
    if done.timed_out:
        return (f"ssh {hop}{via}: no answer within {CHECK_TIMEOUT:g} s", f"check that {hop} is up and reachable")
    explained = explain_ssh_failure(done.out)
    text = done.out.lower()
    if "host key" in text or "host identification" in text:
        return (f"ssh {hop}{via}: host key: {explained or done.last_line()}", None)
    if "permission denied" in text or "too many authentication failures" in text:
        return (f"ssh {hop}{via}: login: {explained or done.last_line()}", None)
    if "administratively prohibited" in text:
        return (
            f"ssh {hop}{via}: the hop before it does not forward TCP ({done.last_line()})",
            "ask its administrators to allow TCP forwarding (AllowTcpForwarding yes)",
        )
    return (
        f"ssh {hop}{via}: cannot connect: {explained or done.last_line()}",
        f"check the host name (--host/--tunnel-hosts) and that {hop} is up and reachable"
        + (f" from {before[-1]}" if before else ""),
    )


def _forwarding_result(done: Done) -> str:
    """allowed / prohibited, or what went wrong, from ssh's own words about the channel it asked for."""
    if "administratively prohibited" in done.out:
        return "prohibited"
    if "open failed: connect failed" in done.out:
        return "allowed"  # sshd tried to connect: forwarding is on (nothing listens where doctor asked)
    if done.timed_out:
        return "no answer"
    return done.last_line() if done.out.strip() else "no answer from sshd"


def _program_script(program: str) -> str:
    return f"command -v {shlex.quote(program)} || exit 127\n"


def _exec_script(argv: Sequence[str]) -> str:
    return f"exec {shlex.join(argv)} </dev/null 2>&1\n"


def _login_script(precmd: str | None, command: str) -> str:
    """Run ``command`` in the user's login shell after the pre-command, as the bootstrap runs the kernel."""
    text = f"{precmd}\n{command}" if precmd else command
    return (
        f"rik_cmd={shlex.quote(text)}\n"
        'case ${SHELL:-/bin/sh} in *csh) rik_login="";; *) rik_login=-l;; esac\n'
        'exec "${SHELL:-/bin/sh}" $rik_login -c "$rik_cmd" </dev/null 2>&1\n'
    )


def _kernel_probe(words: Sequence[str]) -> tuple[list[str] | None, str]:
    """A command that starts the kernel's program and loads its kernel package, without starting a kernel."""
    program = words[0]
    if len(words) >= 3 and words[1] == "-m" and words[2].startswith("ipykernel"):
        return [program, "-c", "import ipykernel"], "ipykernel"
    base = program.rsplit("/", 1)[-1]
    if any("IRkernel" in w for w in words) and base in ("R", "Rscript"):
        code = "library(IRkernel)"
        return ([program, "--slave", "-e", code] if base == "R" else [program, "-e", code]), "IRkernel"
    return None, ""


# -------------------------------------------------------------------------------------------------------------
# The command
# -------------------------------------------------------------------------------------------------------------


def diagnose(kernel: InstalledKernel, host: PluginHost | None = None) -> Report:
    """Every check of one kernel (``rik doctor NAME``)."""
    return Doctor(kernel, host or PluginHost()).run()


@click.command()
@click.argument("kernels", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(kernels: tuple[str, ...], as_json: bool) -> None:
    """Check rik kernels (all, or those named): hosts, keys, forwarding, scheduler, kernel command.

    Each check is one line: ok, or the problem and how to fix it. The exit status is 1 when a check fails.
    """
    if kernels:
        selected = [lookup(name) for name in kernels]
    else:
        selected = [k for _, k in sorted(find_kernels().items()) if is_rik(k)]
        if not selected:
            if as_json:
                click.echo("[]")
            else:
                click.echo("No rik kernels are installed. Add one with `rik manage --add`.")
            return
    host = PluginHost()
    reports = []
    for kernel in selected:
        if not as_json:
            click.echo(f"{kernel.name}: {kernel.spec.get('display_name', '')}")
        checker = Doctor(kernel, host, None if as_json else lambda c: click.echo(c.line()))
        try:
            reports.append(checker.run())
        except OSError as exc:  # no temporary directory, too many processes...: say so, check the others
            checker.add("doctor", "here", PROBLEM, f"could not run the checks: {exc}")
            reports.append(checker.report)
    bad = [r for r in reports if not r.ok]
    count = f"{len(reports)} kernel{'s' if len(reports) != 1 else ''} checked"
    if as_json:
        click.echo(json.dumps([r.as_json() for r in reports], indent=2))
    elif not bad:
        click.echo(f"{count}: no problems found")
    if bad:
        names = ", ".join(r.kernel for r in bad)
        raise RikError(f"{count}: {len(bad)} with problems ({names}); the lines marked PROBLEM say how to fix them")
