"""The launcher: starts (or adopts) a kernel through its plugin, keeps it reachable, and ends it as the user chose.

One thread, one ``select`` loop; signals only set flags (through a wake-up pipe). The parts it drives:
:class:`~.session.Session` (the connection to the holder that keeps the job alive between connections),
:class:`~.tunnel.Tunnel` (the five channels), :class:`~.control.ControlRelay` (tells a shutdown from a restart).

How a launcher ends, and what it leaves:

- ``shutdown`` (the frontend asked for a shutdown, SIGTERM, a failed start): the kernel, the job, the holder and
  every file are gone.
- ``park`` (the kernel ended on its own: a restart, a crash): the job waits a short while for the next launcher,
  which starts a fresh kernel in it (restart in place: same job, no queue wait).
- ``detach`` (``rik attach`` ended, or the launcher was killed): the kernel lives on for its window (``--grace``,
  counted while idle and disconnected, never past walltime), listed by ``rik ps``, until reattached or stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from .. import bootstrap
from ..config import Endpoint, KernelConfig
from ..errors import LaunchError, RikError
from ..models import LaunchCommand, LaunchRequest
from ..plugins import PluginHost
from ..ssh import SSHSettings, SSHTransport, explain_ssh_failure
from ..state import KernelState
from . import holder
from .job import Where, cancel_job, find_adoptable, find_session, kernel_route
from .logs import log, progress
from .protocol import START, Marker, parse_marker, split_lines
from .session import Session
from .tunnel import CHANNELS, Tunnel

__all__ = ["Launcher", "Where", "cancel_job", "find_adoptable", "find_session", "kernel_route"]

PING_SECONDS = 2.0
CONTACT_SAVE_SECONDS = 30.0


class Launcher:
    def __init__(
        self,
        config: KernelConfig,
        connection_file: str,
        connection: dict[str, Any],
        *,
        plugins: PluginHost | None = None,
        adopt: KernelState | None = None,
        reattach: bool = False,
        early: tuple[SSHTransport | None, Any] | None = None,
    ) -> None:
        """``early``: the ssh transport, and a session's ssh already started for it (see ``entry._early_session``)."""
        early_ssh, early_proc = early if early is not None else (None, None)
        self.config = config
        self.connection_file = connection_file
        self.connection = connection
        self.plugins = plugins or PluginHost.for_interface(config.interface)
        self.scheduler = self.plugins.scheduler(config.interface)
        #: The line by which this scheduler says it ended a job (its plugin's SchedulerInfo.ended_pattern).
        self.ended = re.compile(self.scheduler.ended_pattern, re.I) if self.scheduler.ended_pattern else None
        self.request: LaunchRequest = config.request()
        self.command: LaunchCommand = self.plugins.build_launch_command(self.request)
        self.local = self.scheduler.on_this_machine
        self.mode = "direct" if self.local else config.effective_transport()
        self.submit: Endpoint | None = config.endpoint()
        self.chain = config.chain()
        self.ssh: SSHTransport | None = None
        if not self.local:
            self.ssh = early_ssh or SSHTransport(
                SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass)
            )
        self.key = str(connection.get("key", ""))
        self.park_seconds = float(min(max(config.grace, 4.0), 60.0))
        self.where = Where()
        self.output = ""  # everything the job printed before the bootstrap took over (allocation parsing)
        self.pending = b""
        self.tail: list[str] = []
        self.started_at = time.monotonic()
        self.flags: set[str] = set()
        self.bootstrap_sent = False
        self.starter_sent_at: float | None = None
        self.last_output_at = time.monotonic()
        self.stopping = False
        self.outcome = "shutdown"
        self.allocated = not self.command.argv  # no job: the shell is there at once
        self.allocated_at: float | None = None
        self.walltime_warned = False
        self.last_ping = 0.0
        self.last_saved_contact = 0.0
        self.adopt = adopt
        self.reattach = reattach
        self.restart_sent = False
        self.new_kernel_seen = adopt is None  # a restart in place: the old kernel's EXIT (if any) is not ours
        self.start_failed: int | None = None
        self.end_sent = False
        self.tty_progress = os.isatty(2)
        self.progress_at = 0.0
        self.reattached = False
        self.cancelled: set[str] = set()
        self.lost_since = float("inf")  # when the connection was lost (monotonic), while reconnecting
        self.kernel_status: int | None = None  # a kernel that ended on its own, when that ends the launcher
        self.wake_w: int | None = None
        self.relay: Any = None
        self.relay_inner: dict[str, Path] | None = None
        self.session = Session(self._session_argv, self.ssh.env() if self.ssh else dict(os.environ), self.on_output)
        if early_proc is not None:
            self.session.preset(early_proc)  # a kernel on this machine drops it (Session.direct)
        self.tunnel: Tunnel | None = None
        name = adopt.name if adopt is not None else Path(connection_file).stem
        self.record = KernelState(
            name=name,
            launcher_pid=os.getpid(),
            config=config.to_json(),
            connection_file=connection_file,
            grace=config.grace,
            mode=self.mode,
            session_name=os.environ.get("JPY_SESSION_NAME") or None,
            kernel_name=str(connection.get("kernel_name") or "") or None,
        )
        if adopt is not None:
            self.record.path = adopt.path
            self.record.started = adopt.started
            for attr in ("job_id", "node", "remote_dir", "kernel_pid", "hold_dir", "holder_pid", "offset"):
                setattr(self.record, attr, getattr(adopt, attr))
            self.record.allocated_at = adopt.allocated_at
            self.record.walltime_seconds = adopt.walltime_seconds
            self.record.session_name = self.record.session_name or adopt.session_name
            self.record.kernel_name = adopt.kernel_name or self.record.kernel_name

    # -- signals ---------------------------------------------------------------------------------------------
    def install_signals(self) -> int:
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        self.wake_w = wfd
        names = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate", signal.SIGHUP: "terminate"}
        if self.reattach:  # `rik attach`: Ctrl-C leaves the kernel running
            names[signal.SIGINT] = "detach"

        def handler(signum: int, frame: object) -> None:
            self.flags.add(names[signal.Signals(signum)])

        for sig in names:
            signal.signal(sig, handler)  # also undoes an inherited "ignore" (nohup, background scripts)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        return rfd

    # -- the job ---------------------------------------------------------------------------------------------
    def _session_argv(self) -> list[str]:
        """``/bin/sh -s`` where the holder lives: the submit host through the chain, or this machine."""
        shell = ["/bin/sh", "-s"]
        if self.local:
            return shell
        if self.submit is None:
            return shell
        assert self.ssh is not None
        # A job's submit host is a hop to its node: its master ends with the node's (see rik.ssh).
        return self.ssh.command(self.submit, self.chain, shell, persist=not self.command.argv)

    def client_command(self) -> str:
        """What the holder runs: the job's client, or (plain SSH) the shell that reads the bootstrap."""
        argv = list(self.command.argv) or list(self.request.command)
        return holder.client_command(argv, tty=self.command.tty)

    def start(self) -> None:
        if self.adopt is not None:
            self.plan_relay()
            if self.adopt_kernel():
                return
        where = f" on {self.submit}" if self.submit else ""
        via = f" via {' '.join(str(h) for h in self.chain)}" if self.chain else ""
        what = "kernel" if not self.command.argv else f"{self.scheduler.label} job"
        log.info("starting %s%s%s", what, where, via)
        self.record.status = "starting"
        self.record.save()
        if self.local:
            self.session.direct(list(self.request.command))
            self.send_bootstrap()
        else:
            # A client that reads its input from the start (not a terminal waiting for a prompt): the bootstrap
            # goes with the script that makes the holder, not one round trip later.
            preload = None if self.command.tty else self.bootstrap_script()
            client = self.client_command()
            if self.session.make(client, tty=self.command.tty, window=self.config.grace, preload=preload):
                self.bootstrap_sent = True
            self.plan_relay()  # after the session's ssh has started: zmq's import is not on its path

    def adopt_kernel(self) -> bool:
        """Connect to the kernel of an earlier launcher (its holder). False: there is nothing to adopt."""
        rec = self.adopt
        assert rec is not None and rec.hold_dir
        self.session.hold_dir = rec.hold_dir
        self.session.holder_pid = rec.holder_pid
        self.session.offset = rec.offset
        self.where.node = rec.node
        self.where.job_id = rec.job_id
        self.where.remote_dir = rec.remote_dir
        self.where.endpoints = dict(rec.endpoints) if rec.endpoints else None
        self.allocated = True
        self.allocated_at = time.monotonic() - (time.time() - rec.allocated_at) if rec.allocated_at else None
        self.bootstrap_sent = True
        self.starter_sent_at = time.monotonic()
        what = "reattaching to" if self.reattach else "restarting, in the same job,"
        job = f" (job {rec.job_id})" if rec.job_id else ""
        log.info("%s the kernel on %s%s", what, rec.node or self.submit, job)
        self.record.status = "attaching"
        self.record.save()
        self.session.attach()
        if not self.reattach and self.mode == "ipc" and self.where.endpoints:
            # The new kernel binds the same socket paths: connect the tunnel while it starts (the relay binds the
            # frontend's ports once it is up).
            self.ensure_tunnel().start(self.where.endpoints, early=True)
        return True

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
            park=self.park_seconds,
            eof_ends=self.local,
            job_id_env=self.command.job_id_env,
            # A kernel on this machine already has the user's environment (Jupyter's): a login shell would only
            # add its profile's time (conda or pyenv set-up: 0.1-0.5 s) to every start. A pre-command keeps it.
            login_shell=not self.local or bool(self.config.precmd),
        )
        return bootstrap.render(spec)

    def send_bootstrap(self) -> None:
        self.bootstrap_sent = True
        if not self.session.write(self.bootstrap_script().encode()):
            raise LaunchError("could not send the kernel's bootstrap: the session closed")

    def control(self, word: str) -> bool:
        return bool(self.bootstrap_sent and self.session.write(f"{word}\n".encode()))

    # -- output ----------------------------------------------------------------------------------------------
    def on_output(self, data: bytes) -> None:
        self.last_output_at = time.monotonic()
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        if not self.allocated or (self.command.tty and not self.bootstrap_sent):
            self.output += text
            if not self.allocated:
                self.update_allocation()
        lines, self.pending = split_lines(self.pending, data)
        for line in lines:
            self.on_line(line)
        if self.command.tty and self.starter_sent_at and not self.bootstrap_sent and START.search(text):
            self.send_bootstrap()

    def update_allocation(self) -> None:
        alloc = self.plugins.parse_allocation(self.request, self.output)
        if alloc == self.where.allocation:
            return
        old = self.where.allocation
        self.where.allocation = alloc
        if alloc.job_id and alloc.job_id != self.where.job_id:
            self.where.job_id = alloc.job_id
            log.info("job %s submitted", alloc.job_id)
            self.save_state()
        if alloc.error:
            raise LaunchError(f"the scheduler refused the job: {alloc.error}")
        said_below = self.command.node_in_job and alloc.state == "running" and not self.allocated
        if (alloc.state, alloc.reason) != (old.state, old.reason) and alloc.state and not alloc.node and not said_below:
            log.info("job %s %s%s", alloc.job_id or "", alloc.state, f" ({alloc.reason})" if alloc.reason else "")
        if alloc.node and not self.where.node and self.command.argv:
            self.where.node = alloc.node
            self.mark_allocated()
            log.info("job %s running on %s", alloc.job_id or "", alloc.node)
        elif self.command.node_in_job and alloc.state == "running" and not self.allocated:
            self.mark_allocated()
            log.info("job %s running", alloc.job_id or "")

    def mark_allocated(self) -> None:
        self.allocated = True
        self.allocated_at = time.monotonic()
        self.record.allocated_at = time.time()
        from ..helpers import walltime_seconds

        if self.config.resources.walltime:
            with contextlib.suppress(Exception):
                self.record.walltime_seconds = float(walltime_seconds(self.config.resources.walltime))

    def on_line(self, line: str) -> None:
        marker = parse_marker(line)
        if marker is None:
            if line.strip():
                self.tail = ([*self.tail, line])[-20:]
                log.debug("remote: %s", line)
            return
        self.on_marker(marker)

    def on_marker(self, m: Marker) -> None:
        kind, rest = m.kind, m.text
        if kind == "NODE":
            parts = m.words
            hostname = parts[0] if parts else None
            if len(parts) >= 3 and not self.where.job_id:
                self.where.job_id = parts[1]
            self.where.remote_dir = parts[-1] if parts else None
            if not self.where.node:
                self.where.node = hostname
            if not self.allocated_at and self.command.argv:
                self.mark_allocated()
            if self.mode == "direct" and not self.local and hostname != socket.gethostname():
                raise LaunchError(
                    f"the job runs on {hostname}, not on this machine ({socket.gethostname()}): "
                    "--transport direct needs a job on this machine; remake the kernel with --transport auto"
                )
            log.info("kernel starting on %s", hostname)
            if self.mode == "ipc" and self.where.remote_dir and self.tunnel is None:
                # The socket paths are known now: connect the tunnel while the kernel starts, not after it.
                self.where.endpoints = self.ipc_endpoints(f"{self.where.remote_dir}/k")
                self.ensure_tunnel().start(self.where.endpoints, early=True)
            self.save_state()
        elif kind == "WORKDIR":
            log.info("working directory %s", rest)
        elif kind == "READY":
            self.on_ready(list(m.words))
        elif kind == "ERROR":
            self.where.error = rest
            log.error("%s", rest)
        elif kind == "PID":
            self.record.kernel_pid = int(rest) if rest.strip().isdigit() else None
            self.save_state()
        elif kind == "RETRY":
            log.info("retrying the kernel start: %s", rest)
        elif kind == "RESTART":
            self.new_kernel_seen = True
            self.where.kernel_exit = None  # the old kernel's
            log.info("starting a new kernel in the same job")
        elif kind == "EXIT":
            self.where.kernel_exit = m.status() if m.status() is not None else 0
        elif kind == "END":
            self.where.end_status = m.status()

    def on_ready(self, words: list[str]) -> None:
        kind = words[0] if words else "direct"
        endpoints = None
        if kind == "ipc":
            endpoints = self.ipc_endpoints(words[1])
        elif kind == "tcp":
            endpoints = {k: f"127.0.0.1:{p}" for k, p in zip(CHANNELS, words[1:], strict=False)}
        early = self.tunnel is not None and self.tunnel.proc is not None and endpoints == self.tunnel.endpoints
        self.where.endpoints = endpoints
        self.where.ready = True
        self.start_relay()
        self.record.status = "attached"
        self.record.endpoints = endpoints
        self.save_state()
        if not self.local and self.key:
            with contextlib.suppress(OSError):
                self.record.save_key(self.key)
        if early:
            assert self.tunnel is not None
            if self.tunnel.rest:
                self.tunnel.forward_rest(True)  # the early tunnel's forwards, now that there is a kernel behind them
        elif endpoints:
            self.ensure_tunnel().start(endpoints)
        took = time.monotonic() - self.started_at
        if self.mode == "direct":
            log.info("kernel process started (%.2f s)", took)
        else:
            log.info("kernel up: its sockets are bound (%.2f s)", took)

    @staticmethod
    def ipc_endpoints(prefix: str) -> dict[str, str]:
        return {k: f"{prefix}-{bootstrap.IPC_PORTS[k]}" for k in CHANNELS}

    def save_state(self) -> None:
        """Record job, node, holder and remote pid as soon as they are known (``rik ps``, ``rik gc``)."""
        self.record.job_id = self.where.job_id
        self.record.node = self.where.node
        self.record.remote_dir = self.where.remote_dir
        self.record.ready = self.where.ready
        self.record.hold_dir = self.session.hold_dir
        self.record.holder_pid = self.session.holder_pid
        self.record.offset = self.session.offset
        self.record.launcher_pid = os.getpid()
        self.record.save()

    # -- tunnels ---------------------------------------------------------------------------------------------
    def tunnel_route(self) -> tuple[Endpoint, tuple[Endpoint, ...]]:
        """The kernel's host, and the hops before it."""
        return kernel_route(bool(self.command.argv), self.submit, self.chain, self.where.node)

    def ensure_tunnel(self) -> Tunnel:
        if self.tunnel is None:
            assert self.ssh is not None
            local: dict[str, int | str] = {k: int(self.connection[k]) for k in CHANNELS}
            if self.relay_inner is not None:
                local.update({k: str(path) for k, path in self.relay_inner.items()})
            self.tunnel = Tunnel(self.ssh, local, self.tunnel_route, int(self.connection["iopub_port"]))
            self.tunnel.stage = self.relay_inner is None
        return self.tunnel

    def plan_relay(self) -> None:
        """Whether the launcher relays the frontend's channels (see :mod:`.control`): where the kernel has a
        tunnel. The relay binds the frontend's ports now, while the kernel starts, so that frontends connect and
        subscribe meanwhile (and their heartbeat is answered: the kernel is coming); the tunnel forwards the
        kernel's channels to the relay's sockets, and the relay connects to them once the kernel is up
        (:meth:`start_relay`). A port it cannot bind leaves the channels to the tunnel alone."""
        if self.local or self.mode == "direct" or self.ssh is None:
            return
        try:
            import zmq  # noqa: F401  # the relay needs it

            from .control import inner_paths
        except ImportError:
            return
        self.relay_inner = inner_paths(self.ssh.dir)
        self.start_relay(connect=False)

    def start_relay(self, *, connect: bool = True) -> None:
        """Bind the relay (see :meth:`plan_relay`) and, with ``connect``, let it reach for the kernel."""
        if self.relay is not None:
            if connect:
                self.relay.connect()
            return
        if self.relay_inner is None:
            return
        assert self.ssh is not None
        from .control import ChannelRelay

        ports = {k: int(self.connection[k]) for k in CHANNELS}
        try:
            self.relay = ChannelRelay(
                ports,
                self.ssh.dir,
                self.key,
                str(self.connection.get("signature_scheme", "hmac-sha256")),
                self.wake_w,
                connect=connect,
            )
        except Exception as exc:  # a port taken: the channels go straight through the tunnel
            log.warning("cannot relay the kernel's channels (%s): the tunnel forwards the ports itself", exc)
            self.relay_inner = None
            if self.tunnel is not None and self.where.endpoints:
                self.tunnel.stop()
                self.tunnel = None
                self.ensure_tunnel().start(self.where.endpoints, staged=True)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> int:
        wake = self.install_signals()
        try:
            self.start()
            return self.loop(wake)
        except RikError as exc:
            log.error("%s", exc)
            self.outcome = "shutdown"
            return 1
        finally:
            self.teardown()

    def loop(self, wake: int) -> int:
        queue_deadline = (
            self.started_at + self.config.queue_timeout if self.config.queue_timeout and self.command.argv else None
        )
        stop_deadline: float | None = None
        while True:
            fds = [wake]
            if self.session.fd is not None:
                fds.append(self.session.fd)
            if self.tunnel is not None and self.tunnel.fd is not None:
                fds.append(self.tunnel.fd)
            waiting = bool(self.tunnel and self.tunnel.waiting() and self.where.ready)
            readable, _, _ = select.select(fds, [], [], 0.02 if waiting else 0.25)
            if wake in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 512)
            now = time.monotonic()
            # -- what the user (or the frontend) asked for
            if "detach" in self.flags:
                log.info("detaching: the kernel keeps running for its window (rik ps, rik attach, rik stop)")
                self.outcome = "detach"
                return 0
            if "terminate" in self.flags and stop_deadline is None:
                if self.relay is not None and self.relay.seen == "restart" and self.where.ready:
                    log.info("restarting: the job waits for the next kernel")
                    self.outcome = "park"
                    return 0
                log.info("shutting down")
                self.stopping = True
                if not self.where.ready:
                    return 143
                if not self.control("stop"):
                    return 143
                stop_deadline = now + 4.0
            if self.relay is not None and self.relay.seen == "shutdown" and self.where.ready and not self.end_sent:
                # The kernel is shutting down: the bootstrap ends the job as soon as it has, with no round trip.
                self.end_sent = self.control("end")
            if "interrupt" in self.flags:
                self.flags.discard("interrupt")
                if self.where.ready:
                    log.info("interrupting the kernel")
                    if not self.control("int"):
                        log.warning("not connected to the kernel: the interrupt could not be passed on")
            # -- the connection to the holder
            if self.session.fd is not None and self.session.fd in readable:
                if not self.session.readable():
                    status = self.connection_ended(now)
                    if status is not None:
                        return status
            elif self.session.state == "lost" and now >= self.session.next_try and not self.stopping:
                self.session.reconnect()
            if self.session.state == "attached":
                self.on_attached(now)
            # -- the kernel
            if self.where.end_status is not None:
                return self.finished()
            if self.where.kernel_exit is not None and self.where.ready:
                status = self.kernel_exited()
                if status is not None:
                    return status
            # A kernel of ours (not the one a restart in place replaces) that ended before it was ready.
            failed = self.where.kernel_exit is not None and not self.where.ready and self.new_kernel_seen
            if failed and self.start_failed is None:
                self.start_failed = self.where.kernel_exit
                self.stopping = True
                if not self.control("stop"):
                    return self.finished()
                stop_deadline = now + 4.0
            if stop_deadline is not None and now > stop_deadline:
                if self.start_failed is not None:
                    return self.finished()
                log.warning("the kernel did not stop in time; ending its session")
                return 143
            if (
                self.command.tty
                and self.allocated
                and self.starter_sent_at is None
                and self.session.state == "attached"
            ):
                self.maybe_type_starter(now)
            if queue_deadline is not None and not self.where.ready and now > queue_deadline:
                raise LaunchError(
                    f"the job did not start within --queue-timeout={self.config.queue_timeout:g} s; cancelled it"
                )
            if self.tunnel is not None:
                self.tunnel.check(self.where.ready)
            self.check_walltime(now)
            self.show_wait(now)

    def show_wait(self, now: float) -> None:
        """On a terminal, a queued job's id, state and time waited, refreshed in place (plain log lines else)."""
        if not self.tty_progress:
            return
        waiting = bool(self.command.argv) and not self.allocated and self.where.allocation.state is not None
        if not waiting:
            if progress["shown"]:
                progress["shown"] = False
                with contextlib.suppress(OSError):
                    os.write(2, b"\r\033[K")
            return
        if now - self.progress_at < 0.25:
            return
        self.progress_at = now
        progress["shown"] = True
        alloc = self.where.allocation
        waited = int(now - self.started_at)
        spin = "|/-\\"[int(now * 4) % 4]
        reason = f" ({alloc.reason})" if alloc.reason else ""
        line = f"\r\033[K[rik] {spin} job {alloc.job_id or '?'} {alloc.state}{reason}, waited {waited // 60}m{waited % 60:02d}s"
        with contextlib.suppress(OSError):
            os.write(2, line.encode())

    def on_attached(self, now: float) -> None:
        """Each time the connection is (back) up: the bootstrap, a restart's key, pings, the record."""
        if not self.bootstrap_sent and not self.command.tty:
            self.send_bootstrap()
        if self.adopt is not None and not self.reattach and not self.restart_sent:
            self.restart_sent = True
            # The key on its own line, read by the bootstrap's builtin `read`: never an argument anywhere.
            self.session.write(f"start\n{self.key}\n".encode())
        if self.adopt is not None and self.reattach and not self.reattached and self.where.endpoints:
            self.reattached = True
            self.where.ready = True
            self.start_relay()
            self.record.status = "attached"
            self.ensure_tunnel().start(self.where.endpoints, staged=True)
            log.info("reattached; the kernel answers through the tunnel again")
            self.save_state()
        if self.record.status == "reconnecting":
            self.record.status = "attached"
            self.save_state()
            # A tunnel from before the loss rode the same broken network: replace it; one started since is kept.
            tunnel = self.tunnel
            if tunnel is not None and (tunnel.proc is None or tunnel.started < self.lost_since):
                tunnel.restart_now(self.where.ready)
            self.lost_since = float("inf")
        if now - self.last_ping >= PING_SECONDS:
            self.last_ping = now
            # Pings are for the bootstrap's window, read once the job runs: a job still queued reads no input, and
            # hours of pings would fill its client's. The record's last contact counts from the start, so `rik gc`
            # can still tell when a queued job's window is over.
            if self.allocated:
                self.control("ping")
            if time.time() - (self.record.last_contact or 0) >= CONTACT_SAVE_SECONDS:
                self.record.last_contact = time.time()
                self.save_state()

    def connection_ended(self, now: float) -> int | None:
        """The session ended: the job's client ended, the holder is gone, or the connection was lost."""
        state = self.session.state
        if state == "ended" or self.stopping:
            return self.finished()
        if state == "gone":
            if self.adopt is not None and not self.reattach and not self.where.ready and not self.restart_sent:
                log.info("the earlier kernel's job is gone: starting a new one")
                self.adopt = None
                self.session = Session(self._session_argv, self.session._env, self.on_output)
                self.where = Where()
                self.allocated = not self.command.argv
                self.bootstrap_sent = False
                self.starter_sent_at = None
                self.start()
                return None
            raise LaunchError("the kernel is gone: its job ended (or its holder was removed) while disconnected")
        if not self.session.attached_once:
            text = "\n".join(self.session.tail)
            why = self.session.error or explain_ssh_failure(text)
            if why:
                raise LaunchError(why)
            last = next((line for line in reversed(self.session.tail) if line.strip()), None)
            raise LaunchError(f"could not reach {self.submit or 'the kernel'}{': ' + last.strip() if last else ''}")
        # Lost: the laptop slept, the network changed, a gateway restarted. The kernel carries on; reconnect.
        why = explain_ssh_failure("\n".join(self.session.tail)) or "the connection ended"
        delay = self.session.schedule_reconnect(now)
        if self.session.attempts == 0:
            log.warning("lost the connection to the kernel (%s); reconnecting in %.1f s", why, delay)
        if self.record.status != "reconnecting":
            self.lost_since = now
        self.record.status = "reconnecting"
        self.save_state()
        if self.session.lost_at is not None and now - self.session.lost_at > max(self.config.grace, 10) + 60:
            raise LaunchError(
                f"could not reach the kernel for {now - self.session.lost_at:.0f} s; it has ended, or ends on its own "
                "when its window runs out (rik ps)"
            )
        return None

    def kernel_exited(self) -> int | None:
        """The kernel ended by itself: a shutdown (the frontend asked), else a restart or a crash."""
        status = self.where.kernel_exit
        if self.local or self.mode == "direct" or (self.relay is not None and self.relay.seen == "shutdown"):
            self.kernel_status = status
            self.stopping = True
            self.control("stop")
            self.where.kernel_exit = None
            self.where.ready = False
            return None  # RIK-END follows
        log.info(
            "the kernel exited (status %s); its job waits %d s for a restart in place", status, int(self.park_seconds)
        )
        self.outcome = "park"
        return 0

    def check_walltime(self, now: float) -> None:
        """Say in the log when the job's time limit is near (5 minutes, or a tenth of it for short jobs)."""
        if self.walltime_warned or not self.where.ready or not self.config.resources.walltime:
            return
        from ..helpers import walltime_seconds

        limit = walltime_seconds(self.config.resources.walltime)
        left = limit - (now - (self.allocated_at or self.started_at))
        if left <= min(300.0, limit / 10):
            self.walltime_warned = True
            log.warning(
                "job %s reaches its time limit (%s) in about %d s: the scheduler will then end the kernel",
                self.where.job_id or "",
                self.config.resources.walltime,
                max(left, 0),
            )

    def maybe_type_starter(self, now: float) -> None:
        """An interactive job shell: type the starter once its prompt is there (typing earlier can kill the
        session on some schedulers)."""
        if self.command.ready_pattern:
            if not re.search(self.command.ready_pattern, self.output, re.M):
                return
        elif now - self.last_output_at < 1.0:
            return
        self.starter_sent_at = now
        self.session.write((bootstrap.STARTER + "\n").encode())

    def finished(self) -> int:
        """The bootstrap or the job's client ended (or the launcher is stopping)."""
        self.outcome = "shutdown"
        if self.where.error and not self.where.ready:
            raise LaunchError(self.where.error)
        if self.start_failed is not None:
            # The kernel's command ended before its sockets were bound: its own words say why.
            words = "; ".join(t.strip() for t in self.tail[-3:] if t.strip())
            raise LaunchError(
                f"the kernel exited with status {self.start_failed} before it was ready{': ' + words if words else ''}"
            )
        if not self.where.ready and self.where.end_status is None and not self.stopping:
            text = "\n".join(
                [*self.tail, *self.session.tail, self.output.strip().splitlines()[-1] if self.output.strip() else ""]
            )
            why = explain_ssh_failure(self.output + "\n" + text)
            if why:
                raise LaunchError(why)
            last = next((line for line in reversed(self.tail) if line.strip()), None)
            raise LaunchError(f"the kernel did not start{': ' + last.strip() if last else ''}")
        if self.stopping:
            status = self.kernel_status
            if status:
                last = "; ".join(t.strip() for t in self.tail[-3:])
                log.error("the kernel exited with status %s%s", status, f": {last}" if last else "")
                return status
            log.info("kernel ended")
            return 0
        if self.where.error:
            log.error("the kernel ended: %s", self.where.error)
            return 1
        pattern = self.ended
        ended = next((line.strip() for line in reversed(self.tail) if pattern and pattern.search(line)), None)
        if ended:
            log.error("the scheduler ended the job: %s", ended)
            return 1
        status = self.where.end_status
        if status is None:
            last = next((line.strip() for line in reversed(self.tail) if line.strip()), "no message")
            log.error("the job ended before the kernel did: %s", last)
            return 1
        if status not in (0, None):
            last = "; ".join(t.strip() for t in self.tail[-3:])
            log.error("the kernel exited with status %s%s", status, f": {last}" if last else "")
            return status
        log.info("kernel exited")
        return 0

    # -- teardown --------------------------------------------------------------------------------------------
    def teardown(self) -> None:
        if self.relay is not None:
            self.relay.close()
        # A parked job (a restart in place): the next launcher starts only once this one has exited, so nothing
        # here waits on the network. The tunnel's and the session's ssh end with their input; the shell around the
        # tunnel's ssh cancels its forwards itself (the relay's sockets are this launcher's own, so the next tunnel
        # never waits for them; without the relay it forwards the frontend's ports, and those must be free first).
        # A shutdown lets the tunnel go likewise: the frontend waits for this launcher's exit, not for the cancel.
        let_go = self.relay_inner is not None and self.outcome in ("park", "shutdown")
        quick = let_go and self.outcome == "park"
        if self.tunnel is not None and let_go:
            self.tunnel.let_go()
        elif self.tunnel is not None:
            self.tunnel.stop()
        if self.outcome in ("park", "detach"):
            if quick:
                self.session.let_go()
            else:
                self.session.close()
            if self.outcome == "park":
                self.record.status = "parked"
                self.record.park_until = time.time() + self.park_seconds
            else:
                self.record.status = "detached"
            self.record.last_contact = time.time()
            self.save_state()
            return
        self.stopping = True
        if not self.where.ready:
            # A job still queued (or starting) has no kernel to stop: cancel it first, while there is time
            # (front ends kill a launcher that does not exit within a few seconds).
            withdraw = self.command.withdraw_input
            if withdraw and self.command.tty and not self.bootstrap_sent and self.session.write(withdraw[:1].encode()):
                time.sleep(0.5)  # the client asks its question, then reads the answer (earlier input is flushed)
                self.session.write(withdraw[1:].encode())
            self.cancel_job()
        if self.session.proc is not None:
            attached = self.session.state == "attached" and self.where.end_status is None and self.bootstrap_sent
            if attached and self.control("stop"):
                self.wait_for_end(3.5)
            self.session.close()
        cancelled = self.cancel_job() if self.where.ready or self.where.job_id else False
        ended = self.where.end_status is not None or self.session.held_exit is not None
        if self.where.ready and not ended and not cancelled and self.session.hold_dir:
            # The kernel could not be reached to end it (the network is down): it must not burn unseen.
            log.warning(
                "could not reach the kernel to end it: it ends when its window runs out; `rik ps` lists it, "
                "`rik stop %s` ends it now",
                self.record.name,
            )
            self.record.status = "detached"
            self.save_state()
            return
        self.record.remove()

    def wait_for_end(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.where.end_status is None and self.session.fd is not None:
            readable, _, _ = select.select([self.session.fd], [], [], 0.1)
            if readable and not self.session.readable():
                return

    def cancel_job(self) -> bool:
        """Cancel the job (once); whether it was cancelled (False: there is no job, or the cancel failed)."""
        job_id = self.where.job_id or self.where.allocation.job_id
        if not job_id or not self.command.argv:
            return False
        if job_id not in self.cancelled:
            if not cancel_job(self.plugins, self.request, self.ssh, self.submit, self.chain, job_id, self.where.node):
                return False
            self.cancelled.add(job_id)
        return True
