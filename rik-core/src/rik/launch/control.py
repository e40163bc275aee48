"""The kernel's channels, relayed by the launcher: frontends connect to the launcher, which is always there.

The launcher binds the frontend's shell, control, stdin (ZeroMQ ROUTER) and IOPub (XPUB) ports on 127.0.0.1 and
relays every message, unchanged, to the kernel's sockets through the tunnel (DEALER and XSUB sockets connected to
Unix sockets in rik's private runtime directory, which the tunnel forwards to the kernel's endpoints). Routing
identities travel as ZeroMQ's extended request-reply envelope, which kernels echo back.

The frontend's ports are bound as soon as the launcher has started the kernel's session, so frontends connect and
subscribe while the kernel starts, as to a local kernel's ports, and their first ``kernel_info`` is answered the
moment the kernel can (a frontend that finds nothing listening retries its connection only every 0.1 s). The
relay reaches for the kernel once it is up (:meth:`ChannelRelay.connect`): a socket retrying a path that is not
there yet backs off, and would be late. The heartbeat is relayed too, and says what a frontend needs to know:
while the kernel starts (the launcher lives and the kernel is coming), the relay answers it itself; once the
kernel is up, only the kernel answers (each ping goes through the tunnel to the kernel's own heartbeat, and none
is answered while the tunnel is down). A client that connects to ports it finds listened on (VS Code, ``jupyter
console --existing``) asks the heartbeat whether the kernel lives when its first ``kernel_info`` waits a second,
and gives up on a kernel that does not answer.

What this gives:

- **Nothing is lost when the tunnel comes back.** The frontends' connections never break (they are local). While
  the tunnel is down, and until the relay's IOPub subscription has reached the kernel again, requests wait in the
  relay; otherwise a request could overtake the subscription, and the kernel would publish its busy/output/idle
  to nobody, leaving the frontend waiting forever (or seeing a cell's idle without its output). The relay knows the
  subscription has arrived when the kernel publishes something for a probe of its own: a signed
  ``kernel_info_request`` on control (answered at once even while a cell runs), sent once IOPub is connected,
  one at a time (see ``PROBE_AGAIN``). Neither the probe's reply nor its IOPub messages reach a frontend. A
  kernel that never publishes for a control request is trusted after a few replies, or 3 s. The relay's sockets towards the tunnel queue nothing
  while their connection is down (``ZMQ_IMMEDIATE``): a request queued there would go out the moment that one
  channel is back, ahead of the subscription, and then once more from the relay.
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
import uuid
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .logs import log

__all__ = ["RELAYED", "ChannelRelay", "inner_paths", "shutdown_kind", "sign"]

DELIM = b"<IDS|MSG>"
#: The channels the launcher relays: all five (the heartbeat as described in the module's doc).
RELAYED = ("shell_port", "control_port", "stdin_port", "iopub_port", "hb_port")
#: The relay's probes for its subscription, one at a time: the next goes PROBE_AGAIN after the last one's reply
#: (its status was not seen), or PROBE_PATIENCE after it was sent (lost with a connection); a kernel still starting
#: would answer every probe queued meanwhile at once, later. A kernel that answers them without publishing
#: anything for them (or never answers) is trusted after PROBE_TRUST_REPLIES replies or PROBE_TRUST_AFTER s.
PROBE_AGAIN = 0.02
PROBE_PATIENCE = 1.0
PROBE_TRUST_AFTER = 3.0
PROBE_TRUST_REPLIES = 3
#: The routing identity of the relay's own requests, and the prefix of their ids.
PROBE_IDENTITY = b"rik-relay-probe"
PROBE_PREFIX = "rik-probe-"


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


def sign(key: bytes, scheme: str, parts: list[bytes]) -> bytes:
    """The Jupyter message signature of ``parts`` (header, parent, metadata, content) (pure; empty without a key
    or for a scheme this Python has no digest for: such a message is refused, never an error here)."""
    digest = getattr(hashlib, scheme.split("-", 1)[-1], None)
    if not key or digest is None:
        return b""
    mac = hmac.new(key, digestmod=digest)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode()


def inner_paths(directory: Path) -> dict[str, Path]:
    """Where the tunnel puts the kernel's relayed channels: Unix sockets in rik's private runtime directory."""
    short = {"shell_port": "sh", "control_port": "co", "stdin_port": "in", "iopub_port": "io", "hb_port": "hb"}
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
        if getattr(hashlib, scheme.split("-", 1)[-1], None) is None:
            return None
        if not hmac.compare_digest(sign(key, scheme, [header, parent, metadata, content]), signature):
            return None
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = {}
    return "restart" if isinstance(body, dict) and body.get("restart") else "shutdown"


class ChannelRelay:
    """Binds ``ports`` (channel -> 127.0.0.1 port) and relays them to Unix sockets ``inner[channel]`` in a thread."""

    def __init__(
        self, ports: dict[str, int], directory: Path, key: str, scheme: str, wake: int | None, *, connect: bool = True
    ) -> None:
        """Bind the frontend's ports now; reach for the kernel now, or (``connect=False``) on :meth:`connect`."""
        import zmq

        self.key = key.encode()
        self.scheme = scheme
        self.wake = wake
        self.seen: str | None = None  # "shutdown" or "restart": the last such request the frontend made
        self.inner = inner_paths(directory)
        self.subscribed = False  # the relay's IOPub subscription has reached the kernel (a probe's status came back)
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._front: dict[str, Any] = {}
        self._back: dict[str, Any] = {}
        try:
            for ch in ("shell_port", "control_port", "stdin_port", "hb_port"):
                front = self._socket(zmq.ROUTER)
                front.bind(f"tcp://127.0.0.1:{ports[ch]}")
                self._front[ch], self._back[ch] = front, self._socket(zmq.DEALER)
            front = self._socket(zmq.XPUB)
            front.bind(f"tcp://127.0.0.1:{ports['iopub_port']}")
            back = self._socket(zmq.XSUB)
            # The relay's own subscription to everything: its probes' status comes back with no frontend subscribed,
            # and XSUB sends it again on every reconnection, ahead of anything else.
            back.send(b"\x01")
            self._monitor = back.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            self._front["iopub_port"], self._back["iopub_port"] = front, back
        except zmq.ZMQError:
            self._close_sockets()
            raise
        self._held: deque[tuple[str, list[bytes]]] = deque()
        # Requests not yet acknowledged by the kernel: id -> (channel, frames); and those it has seen (busy).
        self._pending: dict[str, tuple[str, list[bytes]]] = {}
        self._seen: set[str] = set()
        # The probe for the subscription: since when (None: not probing), the next one, ids sent, replies heard.
        self._probing: float | None = None
        self._next_probe = 0.0
        self._probes: dict[str, float] = {}
        self._probe_replies = 0
        self._session = uuid.uuid4().hex
        # close() wakes the thread through this pipe: a launcher's exit (a shutdown, a restart) never waits out a poll.
        self._stop_r, self._stop_w = os.pipe()
        self._connected = False  # the sockets towards the tunnel are connected (the kernel is up)
        self._heard_kernel = False  # a heartbeat came back from the kernel itself
        if connect:
            self._connect_back()
        self._thread = threading.Thread(target=self._run, name="rik-relay", daemon=True)
        self._thread.start()

    def _socket(self, kind: int) -> Any:
        import zmq

        sock = self._ctx.socket(kind)
        sock.linger = 0
        if kind == zmq.DEALER:
            sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing waits in a connection that is down (see the module's doc)
        # Towards the tunnel: retry soon when it comes back, without hammering it while the kernel starts.
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        return sock

    def connect(self) -> None:
        """Reach for the kernel (it is up): the relay's thread connects its sockets towards the tunnel."""
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"c")

    def _connect_back(self) -> None:
        if not self._connected:
            self._connected = True
            for ch, sock in self._back.items():
                sock.connect(f"ipc://{self.inner[ch]}")

    def _heartbeat(self, frames: list[bytes]) -> None:
        """A frontend's ping: to the kernel once it is up; answered here while it starts, and until the kernel's
        own heartbeat is reachable once (a ping dropped then would tell a frontend that waits for its first
        ``kernel_info`` that the kernel died). Once the kernel has answered, a ping the tunnel cannot take now is
        not answered: the frontend learns the kernel is out of reach."""
        import zmq

        if self._connected:
            try:
                self._back["hb_port"].send_multipart(frames, zmq.NOBLOCK)
                return
            except zmq.Again:
                if self._heard_kernel:
                    return
        self._front["hb_port"].send_multipart(frames)

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
                if self._probing is not None:
                    wait = max(0, min(wait, int((self._next_probe - time.monotonic()) * 1000) + 1))
                events = dict(poller.poll(wait))
                if self._stop_r in events:
                    if b"x" in os.read(self._stop_r, 64) or self._stop.is_set():
                        break
                    self._connect_back()
                if self._monitor in events:
                    self._on_monitor(_monitor_event(self._monitor.recv_multipart()))
                if self._probing is not None:
                    self._probe()
                if self.subscribed:
                    self._send_held()
                for sock in events:
                    if sock is self._monitor or sock == self._stop_r:
                        continue
                    ch, side = owner[sock]
                    frames = sock.recv_multipart()
                    if ch == "hb_port":
                        if side == "back":
                            self._heard_kernel = True
                            self._front[ch].send_multipart(frames)
                        else:
                            self._heartbeat(frames)
                    elif side == "back":
                        if self._own(ch, frames):
                            continue
                        self._acknowledged(ch, frames)
                        self._front[ch].send_multipart(frames)
                    elif ch == "iopub_port":
                        self._back[ch].send_multipart(frames)  # a subscription: XSUB keeps and resends it
                    else:
                        if ch == "control_port":
                            self._note_control(frames)
                        self._held.append((ch, frames))
                        if self.subscribed:
                            self._send_held()
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                log.warning("the channel relay stopped: %s", exc)

    def _send_held(self) -> None:
        """Send what waits, in order; a channel whose connection is down (again) keeps it and what follows."""
        import zmq

        while self._held:
            ch, frames = self._held[0]
            try:
                self._back[ch].send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._held.popleft()
            # Only shell requests are sent again: a control request (an interrupt, a shutdown) sent twice would
            # act twice, on the next cell.
            if ch == "shell_port":
                own, _ = _ids(frames)
                if own:
                    self._pending[own] = (ch, frames)

    def _probe(self) -> None:
        """While the subscription is unconfirmed: a probe when the last one was answered or given up on (see
        PROBE_AGAIN), and trust after PROBE_TRUST_*."""
        import zmq

        assert self._probing is not None
        now = time.monotonic()
        if now - self._probing >= PROBE_TRUST_AFTER or self._probe_replies >= PROBE_TRUST_REPLIES:
            log.debug("relay: the kernel publishes nothing for a control request; its subscription is trusted")
            self._confirmed()
            return
        if now < self._next_probe:
            return
        self._next_probe = now + PROBE_PATIENCE  # sooner when its reply comes (see _own)
        msg_id = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        header = {
            "msg_id": msg_id,
            "msg_type": "kernel_info_request",
            "username": "rik",
            "session": self._session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        parts = [json.dumps(header).encode(), b"{}", b"{}", b"{}"]
        try:
            self._back["control_port"].send_multipart(
                [PROBE_IDENTITY, DELIM, sign(self.key, self.scheme, parts), *parts], zmq.NOBLOCK
            )
        except zmq.Again:  # control is not connected yet: look again soon (not at once: the loop would spin)
            self._next_probe = now + PROBE_AGAIN
            return
        self._probes = {i: t for i, t in self._probes.items() if now - t < 60}
        self._probes[msg_id] = now

    def _own(self, ch: str, frames: list[bytes]) -> bool:
        """A reply to, or IOPub about, one of the relay's probes: it confirms the subscription and goes no further."""
        if ch == "control_port" and frames and frames[0] == PROBE_IDENTITY:
            self._probe_replies += 1
            if self._probing is not None:  # answered without its status seen yet: the next one soon
                self._next_probe = min(self._next_probe, time.monotonic() + PROBE_AGAIN)
            return True
        if ch != "iopub_port":
            return False
        _, parent = _ids(frames)
        if parent is None or not parent.startswith(PROBE_PREFIX):
            return False
        if parent in self._probes and self._probing is not None:
            self._confirmed()
        return True

    def _confirmed(self) -> None:
        self._probing = None
        self.subscribed = True
        log.debug("relay: IOPub subscribed at the kernel")
        self._send_held()
        self._wake()

    def _on_monitor(self, event: dict[str, Any]) -> None:
        import zmq

        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._probing = self._next_probe = time.monotonic()
            self._probe_replies = 0
            log.debug("relay: IOPub connected to the kernel")
        elif event["event"] == zmq.EVENT_DISCONNECTED:
            was = self.subscribed or self._probing is not None
            self.subscribed = False
            self._probing = None
            if was:
                # The tunnel went down: what the kernel never acknowledged may have gone down with it. It goes
                # again first, in its order, then what was waiting already.
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
