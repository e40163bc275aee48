"""Child processes of the launcher: their output on one non-blocking fd, and they die with the launcher, even
after ``kill -9`` (``PR_SET_PDEATHSIG``), in a session of their own (ssh can never prompt on a terminal)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def _debug(text: str, *args: object) -> None:
    """A debug line, once logging is loaded: before (the session started as the launcher's first step, see
    rik.launch.early) nothing is set up to show it, and importing logging would only delay the session."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("rik").debug(text, *args)


__all__ = ["Proc", "child_setup"]

_PR_SET_PDEATHSIG = 1


def child_setup() -> None:  # runs in the child between fork and exec
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
        _debug("starting %s: %s", self.name, shlex.join(self.argv))
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
                preexec_fn=child_setup,
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
            if self.tty:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                return
            # The pipes' file objects own their fds: closing them closes the fds (once).
            for stream in (self.popen.stdout, self.popen.stdin):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


def _tty_child_setup() -> None:
    child_setup()
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
