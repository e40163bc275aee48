"""The kernel's channels, relayed by the launcher: frontends connect to the launcher, which is always there.

The launcher binds the frontend's shell, control, stdin (ZeroMQ ROUTER) and IOPub (XPUB) ports on 127.0.0.1 and
relays every message, unchanged, to the kernel's sockets through the tunnel (DEALER and XSUB sockets connected to
Unix sockets in rik's private runtime directory, which the tunnel forwards to the kernel's endpoints). Routing
identities travel as ZeroMQ's extended request-reply envelope, which kernels echo back. The heartbeat is not
relayed: it goes through the tunnel as it is, so it still says whether the *kernel* answers.

What this gives:

- **Nothing is lost when the tunnel comes back.** The frontends' connections never break (they are local). While
  the tunnel is down, or until the relay's IOPub subscription has reached the kernel again (its handshake is
  seen), requests wait in the relay; otherwise a request could overtake the subscription, and the kernel would
  publish its busy/output/idle to nobody, leaving the frontend waiting forever.
- **A request sent into a dead connection is sent again.** After the laptop wakes up, ssh still holds a
  connection that the network has lost; a request written into it never reaches the kernel. The relay keeps each
  shell request (not control: an interrupt must never act twice) until the kernel shows it got it (its ``busy`` status or its reply, both carry the request's id) and,
  when the tunnel comes back, sends again those the kernel never acknowledged. (A request whose busy status was
  lost in the very instant the connection broke could run twice; a request lost for good would leave the
  notebook waiting forever, which is far more common.)
- **A shutdown told from a restart.** jupyter_client restarts a kernel by asking it to shut down (``shutdown_request``
  with ``restart: true`` on control), waiting for the kernelspec's process to end and starting it again with the
  same connection file; a shutdown is the same request with ``restart: false``. Only the request says which. It
  counts only when its signature is valid for the kernel's key: another local user who can reach 127.0.0.1
  cannot make rik cancel a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .logs import log

__all__ = ["RELAYED", "ChannelRelay", "inner_paths", "shutdown_kind"]

DELIM = b"<IDS|MSG>"
#: The channels the launcher relays (the heartbeat goes straight through the tunnel).
RELAYED = ("shell_port", "control_port", "stdin_port", "iopub_port")
#: After the IOPub handshake, how long requests still wait for the subscription that follows it.
SUBSCRIBE_MARGIN = 0.05


def _ids(frames: list[bytes]) -> tuple[str | None, str | None]:
    """The message's own id and its parent's (pure; ``None`` where a frame is missing or not JSON)."""
    try:
        i = frames.index(DELIM)
        header, parent = json.loads(frames[i + 2]), json.loads(frames[i + 3])
    except (ValueError, IndexError):
        return None, None
    own = header.get("msg_id") if isinstance(header, dict) else None
    par = parent.get("msg_id") if isinstance(parent, dict) else None
    return (own if isinstance(own, str) else None), (par if isinstance(par, str) else None)


def _monitor_event(frames: list[bytes]) -> dict[str, Any]:
    """A ZeroMQ socket-monitor message: the event number (16 bits) and its value (32 bits), then the endpoint.
    (zmq.utils.monitor would do the same, but imports asyncio and ssl on the launcher's start path.)"""
    event, value = struct.unpack("=HI", frames[0][:6])
    return {"event": event, "value": value, "endpoint": frames[1] if len(frames) > 1 else b""}


def inner_paths(directory: Path) -> dict[str, Path]:
    """Where the tunnel puts the kernel's relayed channels: Unix sockets in rik's private runtime directory."""
    short = {"shell_port": "sh", "control_port": "co", "stdin_port": "in", "iopub_port": "io"}
    return {ch: directory / f"z{os.getpid()}{short[ch]}.sock" for ch in RELAYED}


def shutdown_kind(frames: list[bytes], key: bytes, scheme: str = "hmac-sha256") -> str | None:
    """``"restart"`` or ``"shutdown"`` for a validly signed ``shutdown_request``, else ``None`` (pure)."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        return None
    parts = frames[i + 1 : i + 6]
    if len(parts) < 5:
        return None
    signature, header, parent, metadata, content = parts
    try:
        head = json.loads(header)
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("msg_type") != "shutdown_request":
        return None
    if key:
        digest = getattr(hashlib, scheme.split("-", 1)[-1], None)
        if digest is None:
            return None
        mac = hmac.new(key, digestmod=digest)
        for part in (header, parent, metadata, content):
            mac.update(part)
        if not hmac.compare_digest(mac.hexdigest().encode(), signature):
            return None
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = {}
    return "restart" if isinstance(body, dict) and body.get("restart") else "shutdown"


class ChannelRelay:
    """Binds ``ports`` (channel -> 127.0.0.1 port) and relays them to Unix sockets ``inner[channel]`` in a thread."""

    def __init__(self, ports: dict[str, int], directory: Path, key: str, scheme: str, wake: int | None) -> None:
        import zmq

        self.key = key.encode()
        self.scheme = scheme
        self.wake = wake
        self.seen: str | None = None  # "shutdown" or "restart": the last such request the frontend made
        self.inner = inner_paths(directory)
        self.subscribed = False  # the relay's IOPub subscription has reached the kernel (as far as can be seen)
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._front: dict[str, Any] = {}
        self._back: dict[str, Any] = {}
        try:
            for ch in ("shell_port", "control_port", "stdin_port"):
                front = self._socket(zmq.ROUTER)
                front.bind(f"tcp://127.0.0.1:{ports[ch]}")
                back = self._socket(zmq.DEALER)
                back.connect(f"ipc://{self.inner[ch]}")
                self._front[ch], self._back[ch] = front, back
            front = self._socket(zmq.XPUB)
            front.bind(f"tcp://127.0.0.1:{ports['iopub_port']}")
            back = self._socket(zmq.XSUB)
            self._monitor = back.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            back.connect(f"ipc://{self.inner['iopub_port']}")
            self._front["iopub_port"], self._back["iopub_port"] = front, back
        except zmq.ZMQError:
            self._close_sockets()
            raise
        self._held: deque[tuple[str, list[bytes]]] = deque()
        # Requests not yet acknowledged by the kernel: id -> (channel, frames); and those it has seen (busy).
        self._pending: dict[str, tuple[str, list[bytes]]] = {}
        self._seen: set[str] = set()
        self._ready_at: float | None = None
        # close() wakes the thread through this pipe: a launcher's exit (a shutdown, a restart) never waits out a poll.
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="rik-relay", daemon=True)
        self._thread.start()

    def _socket(self, kind: int) -> Any:
        import zmq

        sock = self._ctx.socket(kind)
        sock.linger = 0
        # Towards the tunnel: retry soon when it comes back, without hammering it while the kernel starts.
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        return sock

    def _wake(self) -> None:
        if self.wake is not None:
            with contextlib.suppress(OSError):
                os.write(self.wake, b"r")

    def _run(self) -> None:
        import zmq

        poller = zmq.Poller()
        owner: dict[Any, tuple[str, str]] = {}
        for ch, sock in self._front.items():
            poller.register(sock, zmq.POLLIN)
            owner[sock] = (ch, "front")
        for ch, sock in self._back.items():
            poller.register(sock, zmq.POLLIN)
            owner[sock] = (ch, "back")
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                wait = 200
                if self._held:
                    wait = 20
                elif self._ready_at is not None:  # the subscription's margin: no later than it ends
                    wait = max(0, min(200, int((self._ready_at - time.monotonic()) * 1000) + 1))
                events = dict(poller.poll(wait))
                if self._stop_r in events:
                    break
                if self._monitor in events:
                    self._on_monitor(_monitor_event(self._monitor.recv_multipart()))
                if self._ready_at is not None and time.monotonic() >= self._ready_at:
                    self._ready_at = None
                    self.subscribed = True
                    self._wake()
                if self.subscribed:
                    while self._held:
                        ch, frames = self._held.popleft()
                        self._back[ch].send_multipart(frames)
                for sock in events:
                    if sock is self._monitor or sock == self._stop_r:
                        continue
                    ch, side = owner[sock]
                    frames = sock.recv_multipart()
                    if side == "back":
                        self._acknowledged(ch, frames)
                        self._front[ch].send_multipart(frames)
                    elif ch == "iopub_port":
                        self._back[ch].send_multipart(frames)  # a subscription: XSUB keeps and resends it
                    else:
                        if ch == "control_port":
                            self._note_control(frames)
                        # Only shell requests are sent again: a control request (an interrupt, a shutdown) sent
                        # twice would act twice, on the next cell.
                        if ch == "shell_port":
                            own, _ = _ids(frames)
                            if own:
                                self._pending[own] = (ch, frames)
                        if self.subscribed and not self._held:
                            self._back[ch].send_multipart(frames)
                        else:
                            self._held.append((ch, frames))
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                log.warning("the channel relay stopped: %s", exc)

    def _on_monitor(self, event: dict[str, Any]) -> None:
        import zmq

        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._ready_at = time.monotonic() + SUBSCRIBE_MARGIN
            log.debug("relay: IOPub connected to the kernel")
        elif event["event"] == zmq.EVENT_DISCONNECTED:
            was = self.subscribed
            self.subscribed = False
            self._ready_at = None
            if was:
                # The tunnel went down: what the kernel never acknowledged may have gone down with it.
                resend = [(i, entry) for i, entry in self._pending.items() if i not in self._seen]
                self._held.extendleft(reversed([entry for _, entry in resend]))
                for i, _ in resend:
                    del self._pending[i]
                log.debug("relay: IOPub disconnected; requests wait (%d to send again)", len(resend))

    def _acknowledged(self, ch: str, frames: list[bytes]) -> None:
        """A reply (shell, control) or anything on IOPub names its request as parent: the kernel has it."""
        _, parent = _ids(frames)
        if not parent:
            return
        if ch == "iopub_port":
            if parent in self._pending:
                self._seen.add(parent)
        else:
            self._pending.pop(parent, None)
            self._seen.discard(parent)

    def _note_control(self, frames: list[bytes]) -> None:
        kind = shutdown_kind(frames[1:], self.key, self.scheme)
        if kind:
            self.seen = kind
            log.info("the frontend asked for a %s", kind)
            self._wake()

    def _close_sockets(self) -> None:
        monitor = getattr(self, "_monitor", None)
        if monitor is not None and "iopub_port" in self._back:
            with contextlib.suppress(Exception):
                self._back["iopub_port"].disable_monitor()
        if monitor is not None:
            monitor.close(0)
        for sock in (*self._front.values(), *self._back.values()):
            sock.close(0)
        self._ctx.term()

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            with contextlib.suppress(OSError):
                os.write(self._stop_w, b"x")
            self._thread.join(2.0)
            for fd in (self._stop_r, self._stop_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._close_sockets()
        for path in self.inner.values():
            with contextlib.suppress(OSError):
                path.unlink()
