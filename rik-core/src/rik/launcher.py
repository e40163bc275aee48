"""The launcher kernel.json runs: ``python -m rik --kernel-config JSON {connection_file}``.

It starts the job (or SSH session) through the kernel's plugin, sends the bootstrap, forwards the five channels,
supervises everything, relays interrupts, and on shutdown leaves nothing behind: kernel, tunnels, job, files.
One thread, one ``select`` loop; signals only set flags (through a wake-up pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bootstrap
from .config import Endpoint, KernelConfig, parse_endpoint
from .errors import LaunchError, RikError
from .models import Allocation, LaunchCommand, LaunchRequest
from .plugins import PluginHost
from .ssh import SSHSettings, SSHTransport, explain_ssh_failure
from .state import KernelState

log = logging.getLogger("rik")

CHANNEL_KEYS = bootstrap.CHANNELS
_MARKER = re.compile(r"^RIK-(START|NODE|WORKDIR|READY|PID|EXIT|ERROR|RETRY)\b ?(.*)$")
_START = re.compile(r"RIK-START\d+")
#: Lines by which schedulers say they ended a job (time limit, preemption, an administrator's cancel).
_SCHEDULER_ENDED = re.compile(
    r"CANCELLED AT|DUE TO TIME LIMIT|TIME LIMIT|exceeded|h_rt|killed by|TERM_RUNLIMIT|walltime", re.I
)


# -------------------------------------------------------------------------------------------------------------
# Logging that never shows the key
# -------------------------------------------------------------------------------------------------------------


class _Redact(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                if secret and secret in text:
                    text = text.replace(secret, "<redacted>")
            record.msg, record.args = text, None
        return True


_redact = _Redact()


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[rik %(asctime)s.%(msecs)03d] %(message)s", "%H:%M:%S"))
    handler.addFilter(_redact)
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


# -------------------------------------------------------------------------------------------------------------
# Child processes: they die with the launcher, even after kill -9
# -------------------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()  # no controlling terminal: ssh can never prompt on one and hang
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child process with its output (stdout and stderr together) on one fd, through a pipe or a pty."""

    def __init__(self, argv: Sequence[str], *, tty: bool, env: dict[str, str] | None = None, name: str = "") -> None:
        self.argv = list(argv)
        self.name = name or os.path.basename(argv[0])
        self.tty = tty
        log.debug("starting %s: %s", self.name, shlex.join(self.argv))
        if tty:
            import pty

            master, slave = pty.openpty()
            import termios

            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ECHO  # the local terminal never echoes what rik sends
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self.popen = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                preexec_fn=_tty_child_setup,
                close_fds=True,
            )
            os.close(slave)
            self.fd = master
            self.wfd = master
        else:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_child_setup,
                close_fds=True,
            )
            assert self.popen.stdout is not None and self.popen.stdin is not None
            self.fd = self.popen.stdout.fileno()
            self.wfd = self.popen.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.closed = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def read(self) -> bytes | None:
        """Available output, ``b""`` when none yet, ``None`` at end of output."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # pty: the other side is gone
                return None
            raise
        return data or None

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            try:
                n = os.write(self.wfd, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                select.select([], [self.wfd], [], 0.2)
            except OSError:
                return False
        return True

    def close_input(self) -> None:
        if self.tty:
            return
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        except OSError:
            pass

    def poll(self) -> int | None:
        return self.popen.poll()

    def stop(self, timeout: float = 2.0) -> None:
        """TERM, then KILL; and reap."""
        if self.popen.poll() is None:
            try:
                self.popen.terminate()
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        if not self.closed:
            self.closed = True
            for fd in {self.fd, self.wfd}:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not self.tty:
                for stream in (self.popen.stdout, self.popen.stdin):
                    try:
                        if stream:
                            stream.close()
                    except OSError:
                        pass


def _tty_child_setup() -> None:
    _child_setup()
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# -------------------------------------------------------------------------------------------------------------
# The launcher
# -------------------------------------------------------------------------------------------------------------


@dataclass
class Launch:
    """Where things are, learnt along the way."""

    allocation: Allocation = field(default_factory=Allocation)
    node: str | None = None
    job_id: str | None = None
    remote_dir: str | None = None
    endpoints: dict[str, str] | None = None
    ready: bool = False
    exit_status: int | None = None
    error: str | None = None


def kernel_route(
    has_job: bool, submit: Endpoint | None, chain: tuple[Endpoint, ...], node: str | None
) -> tuple[Endpoint, tuple[Endpoint, ...]]:
    """The host the kernel runs on, and the hops before it: the host itself for plain SSH; for a job, its node
    reached through the chain and the submit host."""
    if not has_job:
        assert submit is not None
        return submit, chain
    target = parse_endpoint(node or "", "node")
    hops = chain + ((submit,) if submit else ())
    if submit and target.host == submit.host:
        return submit, chain
    return target, hops


class Launcher:
    def __init__(self, config: KernelConfig, connection_file: str, connection: dict[str, Any]) -> None:
        self.config = config
        self.connection_file = connection_file
        self.connection = connection
        self.host = PluginHost()
        self.scheduler = self.host.scheduler(config.interface)
        self.request: LaunchRequest = config.request()
        self.command: LaunchCommand = self.host.build_launch_command(self.request)
        self.local = config.interface == "local"
        self.mode = "direct" if self.local else config.effective_transport()
        self.submit: Endpoint | None = config.endpoint()
        self.chain = config.chain()
        self.ssh: SSHTransport | None = None
        if not self.local:
            self.ssh = SSHTransport(
                SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass)
            )
        self.state = Launch()
        self.job: Proc | None = None
        self.tunnel: Proc | None = None
        self.tunnel_restarts = 0
        self.tunnel_next = 0.0
        self.output = ""  # everything the job printed before the bootstrap took over
        self.pending = b""
        self.tail: list[str] = []
        self.started_at = time.monotonic()
        self.flags: set[str] = set()
        self.bootstrap_sent = False
        self.starter_sent_at: float | None = None
        self.last_output_at = time.monotonic()
        self.stopping = False
        self.allocated = not self.command.argv  # no job: the shell is there at once
        self.allocated_at: float | None = None
        self.walltime_warned = False
        self.record = KernelState(
            name=Path(connection_file).stem,
            launcher_pid=os.getpid(),
            config=config.to_json(),
            connection_file=connection_file,
        )

    # -- signals ---------------------------------------------------------------------------------------------
    def install_signals(self) -> int:
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        names = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate", signal.SIGHUP: "terminate"}

        def handler(signum: int, frame: object) -> None:
            self.flags.add(names[signal.Signals(signum)])

        for sig in names:
            signal.signal(sig, handler)  # also undoes an inherited "ignore" (nohup, background scripts)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        return rfd

    # -- the job ---------------------------------------------------------------------------------------------
    def job_argv(self) -> list[str]:
        argv = list(self.command.argv) or list(self.request.command)
        if self.submit is None:
            return argv
        assert self.ssh is not None
        return self.ssh.command(self.submit, self.chain, argv, tty=self.command.tty)

    def start(self) -> None:
        where = f" on {self.submit}" if self.submit else ""
        via = f" via {' '.join(str(h) for h in self.chain)}" if self.chain else ""
        what = "kernel" if not self.command.argv else f"{self.scheduler.label} job"
        log.info("starting %s%s%s", what, where, via)
        env = self.ssh.env() if self.ssh else dict(os.environ)
        self.job = Proc(self.job_argv(), tty=self.command.tty, env=env, name="job")
        if not self.command.tty:
            self.send_bootstrap()

    def bootstrap_script(self) -> str:
        fallback = os.getcwd() if not self.config.workdir else None
        spec = bootstrap.Bootstrap(
            connection=self.connection,
            kernel_argv=self.config.kernel_argv(),
            mode=self.mode,
            connection_path=self.connection_file if self.mode == "direct" else None,
            workdir=self.config.workdir,
            fallback_workdir=fallback,
            precmd=self.config.precmd,
            grace=self.config.grace,
            job_id_env=self.command.job_id_env,
        )
        return bootstrap.render(spec)

    def send_bootstrap(self) -> None:
        assert self.job is not None
        self.bootstrap_sent = True
        if not self.job.write(self.bootstrap_script().encode()):
            raise LaunchError("could not send the kernel's bootstrap: the session closed")

    def control(self, word: str) -> None:
        if self.job and self.bootstrap_sent and not self.job.closed:
            self.job.write(f"{word}\n".encode())

    # -- output ----------------------------------------------------------------------------------------------
    def on_output(self, data: bytes) -> None:
        self.last_output_at = time.monotonic()
        self.pending += data
        text = self.pending.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        if not self.allocated or (self.command.tty and not self.bootstrap_sent):
            self.output += data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
            if not self.allocated:
                self.update_allocation()
        *lines, rest = text.split("\n")
        self.pending = rest.encode()
        for line in lines:
            self.on_line(line)
        if self.command.tty and self.starter_sent_at and not self.bootstrap_sent and _START.search(text):
            self.send_bootstrap()

    def update_allocation(self) -> None:
        alloc = self.host.parse_allocation(self.request, self.output)
        if alloc == self.state.allocation:
            return
        old = self.state.allocation
        self.state.allocation = alloc
        if alloc.job_id and alloc.job_id != self.state.job_id:
            self.state.job_id = alloc.job_id
            log.info("job %s submitted", alloc.job_id)
            self.save_state()
        if alloc.error:
            raise LaunchError(f"the scheduler refused the job: {alloc.error}")
        said_below = self.command.node_in_job and alloc.state == "running" and not self.allocated
        if (alloc.state, alloc.reason) != (old.state, old.reason) and alloc.state and not alloc.node and not said_below:
            log.info("job %s %s%s", alloc.job_id or "", alloc.state, f" ({alloc.reason})" if alloc.reason else "")
        if alloc.node and not self.state.node and self.command.argv:
            self.state.node = alloc.node
            self.allocated = True
            self.allocated_at = time.monotonic()
            log.info("job %s running on %s", alloc.job_id or "", alloc.node)
        elif self.command.node_in_job and alloc.state == "running" and not self.allocated:
            self.allocated = True
            log.info("job %s running", alloc.job_id or "")

    def on_line(self, line: str) -> None:
        m = _MARKER.match(line.strip())
        if not m:
            if line.strip():
                self.tail = ([*self.tail, line])[-20:]
                log.debug("remote: %s", line)
            return
        kind, rest = m.groups()
        if kind == "NODE":
            parts = rest.split()
            hostname = parts[0] if parts else None
            if len(parts) >= 3 and not self.state.job_id:
                self.state.job_id = parts[1]
            self.state.remote_dir = parts[-1] if parts else None
            if not self.state.node:
                self.state.node = hostname
            if self.mode == "direct" and not self.local and hostname != socket.gethostname():
                raise LaunchError(
                    f"the job runs on {hostname}, not on this machine ({socket.gethostname()}): "
                    "--transport direct needs a job on this machine; remake the kernel with --transport auto"
                )
            log.info("kernel starting on %s", hostname)
            if self.mode == "ipc" and self.state.remote_dir and self.tunnel is None:
                # The socket paths are known now: connect the tunnel while the kernel starts, not after it.
                self.state.endpoints = self.ipc_endpoints(f"{self.state.remote_dir}/k")
                self.start_tunnel(early=True)
        elif kind == "WORKDIR":
            log.info("working directory %s", rest)
        elif kind == "READY":
            self.on_ready(rest.split())
        elif kind == "ERROR":
            self.state.error = rest
            log.error("%s", rest)
        elif kind == "PID":
            self.record.kernel_pid = int(rest) if rest.strip().isdigit() else None
        elif kind == "RETRY":
            log.info("retrying the kernel start: %s", rest)
        elif kind == "EXIT":
            self.state.exit_status = (
                int(rest.split()[0]) if rest.split() and rest.split()[0].lstrip("-").isdigit() else None
            )

    def on_ready(self, words: list[str]) -> None:
        kind = words[0] if words else "direct"
        endpoints = None
        if kind == "ipc":
            endpoints = self.ipc_endpoints(words[1])
        elif kind == "tcp":
            endpoints = {k: f"127.0.0.1:{p}" for k, p in zip(CHANNEL_KEYS, words[1:], strict=False)}
        early = self.tunnel is not None and endpoints == self.state.endpoints
        self.state.endpoints = endpoints
        self.state.ready = True
        self.save_state()
        if early:
            self.forward_rest()  # the early tunnel's forwards, now that there is a kernel behind them
        elif endpoints:
            if self.tunnel:
                self.tunnel.stop()
            self.start_tunnel()
        log.info("kernel ready (%.2f s)", time.monotonic() - self.started_at)

    @staticmethod
    def ipc_endpoints(prefix: str) -> dict[str, str]:
        return {k: f"{prefix}-{bootstrap.IPC_PORTS[k]}" for k in CHANNEL_KEYS}

    def save_state(self) -> None:
        """Record job, node and remote pid as soon as they are known (``rik ps``, ``rik gc``)."""
        self.record.job_id = self.state.job_id
        self.record.node = self.state.node
        self.record.remote_dir = self.state.remote_dir
        self.record.ready = self.state.ready
        self.record.save()

    # -- tunnels ---------------------------------------------------------------------------------------------
    def tunnel_route(self) -> tuple[Endpoint, tuple[Endpoint, ...]]:
        """The kernel's host, and the hops before it."""
        return kernel_route(bool(self.command.argv), self.submit, self.chain, self.state.node)

    def start_tunnel(self, *, staged: bool = False, early: bool = False) -> None:
        """Start the ssh process that carries the five channels.

        An ``early`` tunnel connects while the kernel is still starting (the socket paths are known). It forwards
        IOPub and the heartbeat at once, and shell, control and stdin once the kernel is ready and the frontend's
        IOPub is connected (or half a second has passed): a frontend connects and subscribes while the kernel
        starts, as to a local kernel, and its first ``kernel_info`` reply overtakes its IOPub subscription less
        often (when it does, jupyter_client waits 0.2 s and asks again).

        A tunnel that comes back (``staged``) forwards IOPub and the heartbeat first, and shell, control and stdin
        only once the frontend's IOPub socket is back (:meth:`forward_rest`, through the tunnel's own control
        socket). Otherwise a request the frontend queued meanwhile can reach the kernel before its IOPub
        subscription does, and the kernel's PUB socket drops everything about it (busy, output, idle): the
        frontend gets the reply but waits forever for the rest.
        """
        assert self.ssh is not None and self.state.endpoints is not None
        target, hops = self.tunnel_route()
        later: tuple[str, ...] = ("shell_port", "control_port", "stdin_port") if staged or early else ()
        first = [(int(self.connection[k]), self.state.endpoints[k]) for k in CHANNEL_KEYS if k not in later]
        self.tunnel_rest = [(int(self.connection[k]), self.state.endpoints[k]) for k in later]
        self.tunnel_control = self.ssh.dir / f"t-{os.getpid()}"
        with contextlib.suppress(OSError):
            self.tunnel_control.unlink()  # left by a tunnel that was killed
        argv = self.ssh.tunnel(target, hops, first, control=self.tunnel_control if self.tunnel_rest else None)
        self.tunnel = Proc(argv, tty=False, env=self.ssh.env(), name="tunnel")
        # Its standard input stays open: the remote session that keeps the tunnel low-latency reads it.
        self.tunnel_output = b""
        self.tunnel_started = time.monotonic()
        self.tunnel_up: float | None = None
        self.tunnel_iopub: float | None = None
        self.tunnel_early = early
        self.tunnel_ready_at: float | None = None

    def iopub_connected(self) -> bool | None:
        """Whether a frontend is connected to the local IOPub port; ``None`` when this system cannot tell."""
        port = int(self.connection["iopub_port"])
        mine = {f"0100007F:{port:04X}", f"7F000001:{port:04X}"}  # 127.0.0.1, either byte order
        try:
            with open("/proc/net/tcp") as fh:
                rows = [line.split() for line in fh.readlines()[1:]]
        except OSError:
            return None
        return any(len(row) > 3 and row[1] in mine and row[3] == "01" for row in rows)  # 01: established

    def forward_rest(self) -> None:
        """Shell, control and stdin: for a tunnel that came back, once the frontend's IOPub had time to subscribe;
        for an early tunnel, once the kernel is ready and the frontend's IOPub is connected (at most 0.5 s later)."""
        assert self.ssh is not None and self.tunnel is not None
        now = time.monotonic()
        if self.tunnel_up is None:
            if not self.tunnel_control.exists():
                return  # still connecting
            self.tunnel_up = now
        if self.tunnel_early:
            if not self.state.ready:
                return
            if self.tunnel_ready_at is None:
                self.tunnel_ready_at = now
            if self.iopub_connected() is False and now < self.tunnel_ready_at + 0.5:
                return
            self.forward_now()
            return
        # A frontend reconnects within a fraction of a second, then subscribes after a few round trips through
        # the tunnel: fewer than connecting the tunnel took.
        settle = min(max(self.tunnel_up - self.tunnel_started, 0.3), 3.0)
        connected = self.iopub_connected()
        if connected and self.tunnel_iopub is None:
            self.tunnel_iopub = now
        if self.tunnel_iopub is not None:
            due = self.tunnel_iopub + settle
        elif connected is None:  # cannot tell: leave the frontend time to reconnect
            due = self.tunnel_up + 1.0 + settle
        else:  # no frontend on IOPub (yet)
            due = self.tunnel_up + 5.0
        if now < due:
            return
        self.forward_now()

    def forward_now(self) -> None:
        assert self.ssh is not None and self.tunnel is not None
        target, _ = self.tunnel_route()
        rest, self.tunnel_rest = self.tunnel_rest, []
        try:
            result = subprocess.run(
                self.ssh.forward(self.tunnel_control, target, rest),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=15,
                env=self.ssh.env(),
                preexec_fn=_child_setup,
            )
            failed, output = result.returncode != 0, result.stdout + result.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed, output = True, str(exc).encode()
        if failed:  # e.g. a port taken meanwhile: this tunnel ends, and check_tunnel starts another one
            self.tunnel_output = (self.tunnel_output + output)[-4000:]
            self.tunnel.popen.terminate()
        else:
            log.debug("tunnel: forwarding %s", " ".join(str(port) for port, _ in rest))

    def check_tunnel(self) -> None:
        if not self.tunnel or self.stopping:
            return
        while True:
            data = self.tunnel.read()
            if not data:
                break
            self.tunnel_output = (self.tunnel_output + data)[-4000:]
        status = self.tunnel.poll()
        if status is None:
            if self.tunnel_rest:
                self.forward_rest()
            return
        now = time.monotonic()
        if self.tunnel_next == 0.0:
            text = self.tunnel_output.decode("utf-8", "replace").strip()
            why = explain_ssh_failure(text) or (text.splitlines()[-1] if text else f"exit status {status}")
            delay = min(2 ** min(self.tunnel_restarts, 4) * 0.5, 10.0)
            log.warning("the tunnel to the kernel closed (%s); reconnecting in %.1f s", why, delay)
            self.tunnel_next = now + delay
            return
        if now >= self.tunnel_next:
            self.tunnel.stop()
            self.tunnel_restarts += 1
            self.tunnel_next = 0.0
            self.start_tunnel(staged=self.state.ready, early=not self.state.ready)
            log.info("tunnel re-established (attempt %d)", self.tunnel_restarts)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> int:
        wake = self.install_signals()
        try:
            self.start()
            return self.loop(wake)
        except RikError as exc:
            log.error("%s", exc)
            return 1
        finally:
            self.teardown()

    def loop(self, wake: int) -> int:
        assert self.job is not None
        queue_deadline = (
            self.started_at + self.config.queue_timeout if self.config.queue_timeout and self.command.argv else None
        )
        stop_deadline: float | None = None
        while True:
            fds = [wake] + ([self.job.fd] if not self.job.closed else [])
            if self.tunnel and not self.tunnel.closed:
                fds.append(self.tunnel.fd)
            # Forwards waiting on the frontend's IOPub: look again soon.
            waiting = bool(self.tunnel and self.tunnel_rest and self.state.ready)
            readable, _, _ = select.select(fds, [], [], 0.02 if waiting else 0.25)
            if wake in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 512)
            if "terminate" in self.flags and stop_deadline is None:
                log.info("shutting down")
                self.stopping = True
                if not self.state.ready:
                    return 143
                self.control("stop")
                stop_deadline = time.monotonic() + 4.0
            if "interrupt" in self.flags:
                self.flags.discard("interrupt")
                if self.state.ready:
                    log.info("interrupting the kernel")
                    self.control("int")
            if self.job.fd in readable:
                data = self.job.read()
                if data is None:
                    return self.finished()
                if data:
                    self.on_output(data)
            if self.state.exit_status is not None and self.state.ready:
                return self.finished()
            now = time.monotonic()
            if stop_deadline is not None and now > stop_deadline:
                log.warning("the kernel did not stop in time; ending its session")
                return 143
            if self.command.tty and self.allocated and self.starter_sent_at is None:
                self.maybe_type_starter(now)
            if queue_deadline is not None and not self.state.ready and now > queue_deadline:
                raise LaunchError(
                    f"the job did not start within --queue-timeout={self.config.queue_timeout:g} s; cancelled it"
                )
            self.check_tunnel()
            self.check_walltime(now)

    def check_walltime(self, now: float) -> None:
        """Say in the log when the job's time limit is near (5 minutes, or a tenth of it for short jobs)."""
        if self.walltime_warned or not self.state.ready or not self.config.resources.walltime:
            return
        from .helpers import walltime_seconds

        limit = walltime_seconds(self.config.resources.walltime)
        left = limit - (now - (self.allocated_at or self.started_at))
        if left <= min(300.0, limit / 10):
            self.walltime_warned = True
            log.warning(
                "job %s reaches its time limit (%s) in about %d s: the scheduler will then end the kernel",
                self.state.job_id or "",
                self.config.resources.walltime,
                max(left, 0),
            )

    def maybe_type_starter(self, now: float) -> None:
        """An interactive job shell: type the starter once its prompt is there (typing earlier can kill the
        session on some schedulers)."""
        assert self.job is not None
        after = self.output
        if self.command.ready_pattern:
            if not re.search(self.command.ready_pattern, after, re.M):
                return
        elif now - self.last_output_at < 1.0:
            return
        self.starter_sent_at = now
        self.job.write((bootstrap.STARTER + "\n").encode())

    def finished(self) -> int:
        status = self.state.exit_status
        if self.state.error:
            raise LaunchError(self.state.error)
        if not self.state.ready:
            text = "\n".join([*self.tail, self.output.strip().splitlines()[-1] if self.output.strip() else ""])
            why = explain_ssh_failure(self.output + "\n" + text)
            if why:
                raise LaunchError(why)
            last = next((line for line in reversed(self.tail) if line.strip()), None)
            raise LaunchError(f"the kernel did not start{': ' + last.strip() if last else ''}")
        if status is None and not self.stopping:
            ended = next((line.strip() for line in reversed(self.tail) if _SCHEDULER_ENDED.search(line)), None)
            if ended:
                log.error("the scheduler ended the job: %s", ended)
                return 1
            last = next((line.strip() for line in reversed(self.tail) if line.strip()), "no message")
            log.error("the session ended before the kernel did: %s", last)
            return 1
        if status not in (0, None) and not self.stopping:
            last = "; ".join(t.strip() for t in self.tail[-3:])
            log.error("the kernel exited with status %s%s", status, f": {last}" if last else "")
        else:
            log.info("kernel exited")
        return 0 if self.stopping else (status or 0)

    # -- teardown --------------------------------------------------------------------------------------------
    def teardown(self) -> None:
        self.stopping = True
        if not self.state.ready:
            # A job still queued (or starting) has no kernel to stop: cancel it first, while there is time
            # (front ends kill a launcher that does not exit within a few seconds).
            self.cancel_job()
        if self.tunnel:
            self.tunnel.stop(1.0)
        if self.job:
            if self.job.poll() is None and self.bootstrap_sent and self.state.ready and self.state.exit_status is None:
                self.control("stop")
                self.wait_for_exit(3.5)
            self.job.close_input()
            deadline = time.monotonic() + 1.0
            while self.job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            self.job.stop(1.0)
        if self.state.ready:
            self.cancel_job()
        self.record.remove()

    def wait_for_exit(self, timeout: float) -> None:
        assert self.job is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.state.exit_status is None:
            readable, _, _ = select.select([self.job.fd], [], [], 0.1)
            if readable:
                data = self.job.read()
                if data is None:
                    return
                if data:
                    self.on_output(data)

    def cancel_job(self) -> None:
        job_id = self.state.job_id or self.state.allocation.job_id
        if not job_id or not self.command.argv:
            return
        alloc = Allocation(
            job_id=job_id,
            node=self.state.node,
            state=self.state.allocation.state,
        )
        try:
            argv = self.host.build_cancel_command(self.request, alloc)
        except RikError as exc:
            log.error("%s", exc)
            return
        if not argv:
            return
        if self.submit is not None:
            assert self.ssh is not None
            full = self.ssh.command(self.submit, self.chain, argv)
        else:
            full = list(argv)
        log.info("cancelling job %s: %s", job_id, shlex.join(argv))
        try:
            result = subprocess.run(
                full,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=20,
                env=self.ssh.env() if self.ssh else None,
                preexec_fn=_child_setup,
            )
            out = (result.stdout + result.stderr).strip()
            if out:
                log.debug("cancel: %s", out)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("could not cancel job %s: %s", job_id, exc)


# -------------------------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------------------------

_VSCODE_FLAGS = {
    "ip": "ip",
    "shell": "shell_port",
    "iopub": "iopub_port",
    "stdin": "stdin_port",
    "control": "control_port",
    "hb": "hb_port",
    "transport": "transport",
    "Session.key": "key",
    "Session.signature_scheme": "signature_scheme",
    "f": "connection_file",
}


def _unquote(value: str) -> str:
    """VS Code writes ``--transport="tcp"`` and ``--Session.key=b"..."`` with the quotes inside the argv word."""
    if value[:2] in ('b"', "b'") and len(value) >= 3 and value[-1] == value[1]:
        return value[2:-1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_args(argv: Sequence[str]) -> tuple[KernelConfig, str, dict[str, Any]]:
    """``--kernel-config JSON [-f] FILE``, plus the flags VS Code appends to Python kernels
    (``--ip= --shell= --iopub= --stdin= --control= --hb= --transport= --Session.key= --f=``): those win over the
    file, and rebuild the connection when the file is missing or empty (a name VS Code gave but never wrote)."""
    parser = argparse.ArgumentParser(prog="python -m rik", add_help=True, allow_abbrev=False)
    parser.add_argument("--kernel-config", required=True)
    parser.add_argument("-f", dest="connection_flag")
    parser.add_argument("connection_file", nargs="?")
    known, extra = parser.parse_known_args(list(argv))
    config = KernelConfig.loads(known.kernel_config)
    overrides: dict[str, Any] = {}
    for word in extra:
        m = re.match(r"--([\w.]+)=(.*)$", word, re.S)
        if m and m.group(1) in _VSCODE_FLAGS:
            name = _VSCODE_FLAGS[m.group(1)]
            value: Any = _unquote(m.group(2))
            if name.endswith("_port"):
                try:
                    value = int(value)
                except ValueError:
                    raise RikError(f"{word}: not a port number") from None
            overrides[name] = value
    flag_file = overrides.pop("connection_file", None)
    path = known.connection_flag or known.connection_file or flag_file
    if not path:
        raise RikError("no connection file given")
    complete = all(k in overrides for k in CHANNEL_KEYS) and "key" in overrides
    try:
        text = Path(path).read_text()
        connection = json.loads(text) if text.strip() or not complete else {}
    except (OSError, ValueError) as exc:
        if not complete:
            raise RikError(f"cannot read the connection file {path}: {exc}") from None
        connection = {}
    if not connection:  # rebuilt from the flags alone; written for a kernel that reads this very file
        connection = {"transport": "tcp", "ip": "127.0.0.1", "signature_scheme": "hmac-sha256", **overrides}
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(connection, fh)
    connection.update(overrides)
    return config, path, connection


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging(verbose="--verbose" in args or bool(os.environ.get("RIK_DEBUG")))
    try:
        config, path, connection = parse_args(args)
    except RikError as exc:
        log.error("%s", exc)
        return 2
    setup_logging(verbose=config.verbose or bool(os.environ.get("RIK_DEBUG")))
    key = connection.get("key")
    if isinstance(key, str) and key:
        _redact.secrets.append(key)
    try:
        launcher = Launcher(config, path, connection)
    except RikError as exc:
        log.error("%s", exc)
        return 2
    return launcher.run()
