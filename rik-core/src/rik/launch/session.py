"""The launcher's connection to the holder (see :mod:`.holder`), and its reconnection.

A :class:`Session` is one ``/bin/sh -s`` on the submit host, through ssh and the chain of gateways (or on this
machine when there is no submit host). The first one makes the holder; every later one attaches to the same
holder from the byte where the previous one stopped, so the launcher sees the job's output exactly once whatever
happened to the network in between. Input written while no connection is up is not queued: control words are
only meaningful to a kernel that can be reached, and the launcher says what it dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import holder
from .logs import log
from .proc import Proc
from .protocol import parse_marker, split_lines

__all__ = ["Session"]


class Session:
    """The holder's output arrives through ``on_output`` (bytes, exactly once, in order); ``state`` says where
    the connection is: ``connecting`` (sent the script, no ``RIK-ATTACHED`` yet), ``attached``, ``lost``,
    ``gone`` (the holder is no longer there) or ``ended`` (the job's client ended: ``held_exit``)."""

    def __init__(self, argv: Callable[[], list[str]], env: dict[str, str], on_output: Callable[[bytes], None]) -> None:
        self._argv = argv
        self._env = env
        self._on_output = on_output
        self.proc: Proc | None = None
        self.state = "new"
        self.hold_dir: str | None = None
        self.holder_pid: int | None = None
        self.offset = 0  # bytes of the holder's output already passed on
        self.held_exit: int | None = None
        self.error: str | None = None
        self.tail: list[str] = []  # what the session said before attaching (ssh's own messages)
        self.attempts = 0  # reconnect attempts since the connection was lost
        self.lost_at: float | None = None
        self.next_try = 0.0
        self.attached_once = False
        self._pre = b""
        self._post_lines = b""
        self.direct_mode = False
        self._preset: Proc | None = None

    def preset(self, proc: Proc) -> None:
        """The next connection's process, already started (``/bin/sh -s`` through ssh, waiting for its script)."""
        self._preset = proc

    # -- connecting ------------------------------------------------------------------------------------------
    def make(self, client: str, *, tty: bool, window: float | None = None, preload: str | None = None) -> bool:
        """Make the holder for the shell command ``client`` and attach to it; with ``preload``, the job's first
        input goes with it (see :func:`.holder.render_make`). Whether ``preload`` did."""
        self._start(holder.render_make(client, tty=tty, window=window, preload=preload))
        return holder.carries(preload)

    def direct(self, argv: list[str]) -> None:
        """No holder (a kernel on this machine): ``argv`` reads the bootstrap itself, and its end is the end."""
        self.drop_preset()
        self.proc = Proc(argv, tty=False, env=self._env, name="kernel")
        self.state = "attached"
        self.attached_once = True
        self.direct_mode = True

    def attach(self) -> None:
        assert self.hold_dir is not None
        self._start(holder.render_attach(self.hold_dir, self.offset))

    def _start(self, script: str) -> None:
        self._pre = b""
        self.tail = []
        self.proc, self._preset = self._preset or Proc(self._argv(), tty=False, env=self._env, name="session"), None
        self.state = "connecting"
        if not self.proc.write(script.encode()):
            self.state = "lost"

    @property
    def fd(self) -> int | None:
        return self.proc.fd if self.proc is not None and not self.proc.closed else None

    # -- data ------------------------------------------------------------------------------------------------
    def readable(self) -> bool:
        """Read what is there; ``False`` once this connection has ended (see :attr:`state`)."""
        assert self.proc is not None
        data = self.proc.read()
        if data is None:
            self._closed()
            return False
        if not data:
            return True
        if self.state == "connecting":
            data = self._preamble(data)
        if data and self.state == "attached":
            self.offset += len(data)
            self._watch_held_exit(data)
            self._on_output(data)
        return True

    def _preamble(self, data: bytes) -> bytes:
        """Lines before ``RIK-ATTACHED`` are the holder's (or ssh's); return the bytes after it."""
        buf = self._pre + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            marker = parse_marker(text)
            if marker is None:
                if text.strip():
                    self.tail = [*self.tail, text][-20:]
                    log.debug("session: %s", text)
                continue
            if marker.kind == "HOLD":
                self.hold_dir = marker.words[0] if marker.words else None
                self.holder_pid = int(marker.words[1]) if len(marker.words) > 1 and marker.words[1].isdigit() else None
            elif marker.kind == "ERROR":
                self.error = marker.text
            elif marker.kind == "GONE":
                self.state = "gone"
                return b""
            elif marker.kind == "ATTACHED":
                self.state = "attached"
                self.attached_once = True
                if self.lost_at is not None:
                    log.info(
                        "connection to the kernel is back after %.1f s (attempt %d)",
                        time.monotonic() - self.lost_at,
                        self.attempts,
                    )
                self.lost_at = None
                self.attempts = 0
                self._pre = b""
                return buf
        self._pre = buf
        return b""

    def _watch_held_exit(self, data: bytes) -> None:
        lines, self._post_lines = split_lines(self._post_lines, data)
        for line in lines:
            marker = parse_marker(line)
            if marker is not None and marker.kind == "HELD-EXIT":
                self.held_exit = marker.status()
                # The job's client ended: end this connection too (its `cat` waits on our input).
                if self.proc is not None:
                    self.proc.close_input()

    def _closed(self) -> None:
        assert self.proc is not None
        self.proc.stop(1.0)
        if self.direct_mode:
            self.held_exit = self.proc.poll()
            self.state = "ended"
        elif self.held_exit is not None:
            self.state = "ended"
        elif self.state != "gone":
            self.state = "lost"

    # -- writing ---------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        if self.state != "attached" or self.proc is None or self.proc.closed:
            return False
        return self.proc.write(data)

    # -- lost connections ------------------------------------------------------------------------------------
    def schedule_reconnect(self, now: float) -> float:
        """After a lost connection: when to try again (backoff 0.5, 1, 2, 4, 8, 10, 10… s)."""
        if self.lost_at is None:
            self.lost_at = now
        delay = min(0.5 * 2 ** min(self.attempts, 5), 10.0)
        self.next_try = now + delay
        return delay

    def reconnect(self) -> None:
        self.attempts += 1
        log.info("reconnecting to the kernel (attempt %d)", self.attempts)
        self.attach()

    def drop_preset(self) -> None:
        if self._preset is not None:
            self._preset.close_input()
            self._preset.stop(1.0)
            self._preset = None

    def close(self) -> None:
        """End this connection (the holder, the job and the kernel carry on)."""
        self.drop_preset()
        if self.proc is not None:
            self.proc.close_input()
            deadline = time.monotonic() + 1.0
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            self.proc.stop(1.0)
            self.proc.popen.wait()  # reaped, whatever happened above
            self.proc = None

    def let_go(self) -> None:
        """End this connection without waiting for it (the launcher exits next: the session's ssh, whose parent-death
        signal is TERM, ends with it; the holder, the job and the kernel carry on)."""
        self.drop_preset()
        if self.proc is not None:
            self.proc.close_input()

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None
