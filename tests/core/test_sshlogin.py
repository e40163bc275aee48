"""rik.sshlogin's wake: the short sessions on the jump hosts' masters start without being waited for, end within
their limit, and never hold the login's host locks (the next kernel's login waits on those)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from rik import sshlogin


def _running(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if marker.encode() in argv and state != "Z":
                found.append(int(entry))
    return found


def _until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_wake_returns_at_once_ends_its_sessions_at_the_limit_and_holds_no_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    marker = f"{os.getpid() % 1000 + 1000}.5"  # a sleep no one else runs
    sshlogin.wake([["sleep", marker]], limit=1.0)
    # Not waited for: it still runs.
    assert _until(lambda: _running(marker), 5), "the session was not started"
    # The login lets go of its locks; the session running on must not keep them.
    os.close(held)
    other = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
    # Ended at its limit, and reaped (not a zombie).
    assert _until(lambda: not _running(marker), 10), "the session outlived its limit"


def test_no_jump_hosts_means_nothing_to_wake() -> None:
    before = os.getpid()
    sshlogin.wake([])
    assert os.getpid() == before
