"""The control channel, relayed by the launcher so that it can tell a shutdown from a restart.

jupyter_client restarts a kernel by asking it to shut down (``shutdown_request`` with ``restart: true`` on the
control channel), waiting for the kernelspec's process to end, and starting it again with the same connection
file; a shutdown is the same request with ``restart: false``. Only the request says which, so the launcher binds
the frontend's control port itself (a ZeroMQ ROUTER on 127.0.0.1) and relays every message, unchanged, to the
kernel's control socket through the tunnel (a DEALER on a Unix socket in rik's private runtime directory). Routing
identities travel as ZeroMQ's extended request-reply envelope, which kernels echo back.

A ``shutdown_request`` counts only when its signature is valid for the kernel's key: another local user who can
reach 127.0.0.1 cannot make rik cancel a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import threading
from pathlib import Path
from typing import Any

from .logs import log

__all__ = ["ControlRelay", "shutdown_kind"]

DELIM = b"<IDS|MSG>"


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


class ControlRelay:
    """Relays the control channel between ``127.0.0.1:port`` and the Unix socket ``inner`` in a thread; calls
    ``on_shutdown(kind)`` (from that thread) for each shutdown request."""

    def __init__(self, port: int, inner: Path, key: str, scheme: str, wake: int | None) -> None:
        import zmq

        self.inner = inner
        self.key = key.encode()
        self.scheme = scheme
        self.wake = wake
        self.seen: str | None = None  # "shutdown" or "restart", the last request seen
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._front = self._ctx.socket(zmq.ROUTER)
        self._front.linger = 0
        self._front.bind(f"tcp://127.0.0.1:{port}")
        self._back = self._ctx.socket(zmq.DEALER)
        self._back.linger = 0
        self._back.connect(f"ipc://{inner}")
        self._thread = threading.Thread(target=self._run, name="rik-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        poller.register(self._back, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(200):
                    frames = sock.recv_multipart()
                    if sock is self._front:
                        kind = shutdown_kind(frames[1:], self.key, self.scheme)
                        if kind:
                            self.seen = kind
                            log.info("the frontend asked for a %s", kind)
                            if self.wake is not None:
                                with contextlib.suppress(OSError):
                                    os.write(self.wake, b"c")
                        self._back.send_multipart(frames)
                    else:
                        self._front.send_multipart(frames)
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                log.warning("the control channel relay stopped: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._front.close(0)
        self._back.close(0)
        self._ctx.term()
        with contextlib.suppress(OSError):
            self.inner.unlink()
