"""The tunnel: one ssh process that carries the kernel's five channels, restarted with backoff when it dies.

It rides the master connection of the kernel's host (see :meth:`rik.ssh.SSHTransport.tunnel`): a tunnel that comes
back, or the tunnel of the next kernel on that host, logs in nowhere. The master carries the forwards; the tunnel
cancels them when it stops.

Local ends are 127.0.0.1 ports (the frontend's, from its connection file), or a Unix socket in rik's private
runtime directory for a channel the launcher relays itself (control, see :mod:`.control`). Remote ends are the
kernel's Unix sockets (``ipc``) or loopback ports on its host (``tcp``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config import Endpoint
from ..ssh import SSHTransport, explain_ssh_failure
from .logs import log
from .proc import Proc, child_setup

__all__ = ["CHANNELS", "Tunnel"]

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
LATER = ("shell_port", "control_port", "stdin_port")


class Tunnel:
    def __init__(
        self,
        ssh: SSHTransport,
        local: Mapping[str, int | str],
        route: Callable[[], tuple[Endpoint, tuple[Endpoint, ...]]],
        iopub_port: int,
    ) -> None:
        self.ssh = ssh
        self.local = dict(local)  # channel -> local port, or a socket path
        self.route = route
        self.iopub_port = iopub_port
        self.proc: Proc | None = None
        self.forwarded: list[tuple[int | str, str]] = []  # what the master forwards for this tunnel
        self.endpoints: dict[str, str] | None = None
        self.restarts = 0
        self.next_try = 0.0
        self.rest: list[tuple[int | str, str]] = []
        self.output = b""
        self.started = 0.0
        self.up: float | None = None
        self.iopub_at: float | None = None
        self.early = False
        self.ready_at: float | None = None
        self.paused = False  # while the connection to the kernel is lost: no restarts
        self.stage = True  # shell, control and stdin after IOPub (False: the launcher relays them and waits itself)

    @property
    def fd(self) -> int | None:
        return self.proc.fd if self.proc is not None and not self.proc.closed else None

    def start(self, endpoints: dict[str, str], *, staged: bool = False, early: bool = False) -> None:
        """Start the ssh process that carries the five channels.

        An ``early`` tunnel connects while the kernel is still starting (the socket paths are known). It forwards
        IOPub and the heartbeat at once, and shell, control and stdin once the kernel is ready and the frontend's
        IOPub is connected (or half a second has passed): a frontend connects and subscribes while the kernel
        starts, as to a local kernel, and its first ``kernel_info`` reply overtakes its IOPub subscription less
        often (when it does, jupyter_client waits 0.2 s and asks again).

        A tunnel that comes back (``staged``) forwards IOPub and the heartbeat first, and shell, control and stdin
        only once the frontend's IOPub socket is back (:meth:`forward_rest`, added to the master).
        Otherwise a request the frontend queued meanwhile can reach the kernel before its IOPub
        subscription does, and the kernel's PUB socket drops everything about it (busy, output, idle): the
        frontend gets the reply but waits forever for the rest.
        """
        self._end()
        self.endpoints = dict(endpoints)
        target, hops = self.route()
        later = LATER if (staged or early) and self.stage else ()
        first = [(self.local[k], endpoints[k]) for k in CHANNELS if k not in later]
        self.rest = [(self.local[k], endpoints[k]) for k in later]
        # Forwards the master still holds for this tunnel: the same ones are kept (the master takes them again),
        # others are cancelled so that their ports are free.
        stale = [forward for forward in self.forwarded if forward not in first]
        if stale:
            self._ask_master(stale, cancel=True)
        argv = self.ssh.tunnel(target, hops, first)
        self.forwarded = first
        self.proc = Proc(argv, tty=False, env=self.ssh.env(), name="tunnel")
        # Its standard input stays open: the remote session that keeps the tunnel low-latency reads it.
        self.output = b""
        self.started = time.monotonic()
        self.up = None
        self.iopub_at = None
        self.early = early
        self.ready_at = None
        self.next_try = 0.0

    def _end(self) -> None:
        """End the tunnel's process: its standard input closed ends its session, then its shell cancels the
        forwards (it ignores the signals of the launcher's death, see :meth:`rik.ssh.SSHTransport.tunnel`)."""
        if self.proc is not None:
            self.proc.close_input()
            self.proc.stop(1.0)
            self.proc = None

    def let_go(self) -> None:
        """Close the tunnel's input and wait for nothing: its ssh ends, then its shell cancels the forwards."""
        if self.proc is not None:
            self.proc.close_input()

    def stop(self) -> None:
        self._end()
        if self.forwarded:
            forwarded, self.forwarded = self.forwarded, []
            self._ask_master(forwarded, cancel=True)

    def _ask_master(self, forwards: list[tuple[int | str, str]], *, cancel: bool = False) -> tuple[bool, bytes]:
        """Add (or cancel) forwards on the master of the kernel's host: a local request, answered at once."""
        target, _ = self.route()
        try:
            result = subprocess.run(
                self.ssh.forward(target, forwards, cancel=cancel),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=15,
                env=self.ssh.env(),
                preexec_fn=child_setup,
            )
            return result.returncode == 0, result.stdout + result.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc).encode()

    def iopub_connected(self) -> bool | None:
        """Whether a frontend is connected to the local IOPub port; ``None`` when this system cannot tell."""
        port = self.iopub_port
        mine = {f"0100007F:{port:04X}", f"7F000001:{port:04X}"}  # 127.0.0.1, either byte order
        try:
            with open("/proc/net/tcp") as fh:
                rows = [line.split() for line in fh.readlines()[1:]]
        except OSError:
            return None
        return any(len(row) > 3 and row[1] in mine and row[3] == "01" for row in rows)  # 01: established

    def waiting(self) -> bool:
        """Forwards are waiting on the frontend's IOPub: the loop should look again soon."""
        return bool(self.proc is not None and self.rest)

    def forward_rest(self, ready: bool) -> None:
        """Shell, control and stdin: for a tunnel that came back, once the frontend's IOPub had time to subscribe;
        for an early tunnel, once the kernel is ready and the frontend's IOPub is connected (at most 0.5 s later)."""
        assert self.proc is not None
        now = time.monotonic()
        if self.up is None:
            if not self.connected():
                return  # still connecting
            self.up = now
        if self.early:
            if not ready:
                return
            if self.ready_at is None:
                self.ready_at = now
            if self.iopub_connected() is False and now < self.ready_at + 0.5:
                return
            self.forward_now()
            return
        # A frontend reconnects within a fraction of a second, then subscribes after a few round trips through
        # the tunnel: fewer than connecting the tunnel took.
        settle = min(max(self.up - self.started, 0.3), 3.0)
        connected = self.iopub_connected()
        if connected and self.iopub_at is None:
            self.iopub_at = now
        if self.iopub_at is not None:
            due = self.iopub_at + settle
        elif connected is None:  # cannot tell: leave the frontend time to reconnect
            due = self.up + 1.0 + settle
        else:  # no frontend on IOPub (yet)
            due = self.up + 5.0
        if now < due:
            return
        self.forward_now()

    def connected(self) -> bool:
        """Whether the tunnel listens: its first local end accepts (a socket path exists) or its port is bound."""
        if self.proc is None or not self.endpoints:
            return False
        local = next((self.local[k] for k in CHANNELS if k not in LATER), None)
        if isinstance(local, str):
            return os.path.exists(local)
        return local is not None and _listening(local)

    def forward_now(self) -> None:
        assert self.proc is not None
        rest, self.rest = self.rest, []
        ok, output = self._ask_master(rest)
        if not ok:  # e.g. a port taken meanwhile: this tunnel ends, and check() starts another one
            self.output = (self.output + output)[-4000:]
            self.proc.popen.terminate()
        else:
            self.forwarded += rest
            log.debug("tunnel: forwarding %s", " ".join(str(port) for port, _ in rest))

    def check(self, ready: bool) -> None:
        """Read the tunnel's messages; forward the rest when due; restart a dead tunnel with backoff."""
        if self.proc is None:
            return
        while True:
            data = self.proc.read()
            if not data:
                break
            self.output = (self.output + data)[-4000:]
        status = self.proc.poll()
        if status is None:
            if self.rest:
                self.forward_rest(ready)
            return
        if self.paused:
            return
        now = time.monotonic()
        if self.next_try == 0.0:
            text = self.output.decode("utf-8", "replace").strip()
            why = explain_ssh_failure(text) or (text.splitlines()[-1] if text else f"exit status {status}")
            delay = min(2 ** min(self.restarts, 4) * 0.5, 10.0)
            log.warning("the tunnel to the kernel closed (%s); reconnecting in %.1f s", why, delay)
            self.next_try = now + delay
            return
        if now >= self.next_try and self.endpoints is not None:
            self.restarts += 1
            self.start(self.endpoints, staged=ready, early=not ready)
            log.info("tunnel re-established (attempt %d)", self.restarts)

    def restart_now(self, ready: bool) -> None:
        """The connection is back: a new tunnel at once (the old one died with the network, or soon will)."""
        self.paused = False
        if self.endpoints is not None:
            self.restarts += 1
            self.start(self.endpoints, staged=ready, early=not ready)


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (/proc/net/tcp; ``True`` when this system cannot tell)."""
    mine = {f"0100007F:{port:04X}", f"7F000001:{port:04X}"}
    try:
        with open("/proc/net/tcp") as fh:
            rows = [line.split() for line in fh.readlines()[1:]]
    except OSError:
        return True
    return any(len(row) > 3 and row[1] in mine and row[3] == "0A" for row in rows)  # 0A: listening


def remove_socket(path: Path | str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)
