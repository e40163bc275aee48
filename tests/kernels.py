"""Driving real kernels through jupyter_client, as a notebook does, and proving nothing is left behind."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from rik.testing import KernelSession


@dataclass
class Kernel:
    km: KernelManager
    kc: BlockingKernelClient

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute ``code``; return its stdout; raise AssertionError with the traceback on an error."""
        return KernelSession(self.km, self.kc).run(code, timeout)

    def interrupt_sleep(self, seconds: int = 60, timeout: float = 20) -> str:
        """Start ``time.sleep(seconds)``, interrupt it through the kernel manager; return the error's name."""
        msg_id = self.kc.execute(f"import time; time.sleep({seconds})")
        self._wait_busy(msg_id)
        time.sleep(0.5)
        self.km.interrupt_kernel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
                self._drain_reply(msg_id)
                return str(msg["content"]["ename"])
        raise AssertionError(f"no interrupt within {timeout} s")

    def _drain_reply(self, msg_id: str) -> None:
        """Take the interrupted cell's reply, and let the kernel's stop-on-error window pass (ipykernel aborts
        requests that arrive just after an error)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        time.sleep(0.5)

    def _wait_busy(self, msg_id: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                return

    def restart(self, timeout: float = 120) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=timeout)

    def launcher_pid(self) -> int | None:
        provisioner = self.km.provisioner
        proc = getattr(provisioner, "process", None)
        return proc.pid if proc is not None else None


@contextmanager
def started(name: str, timeout: float = 120, **km_kwargs: object) -> Iterator[Kernel]:
    km = KernelManager(kernel_name=name, **km_kwargs)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        km.cleanup_resources()


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes (any user) whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(entry), cmd))
    return found


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content: to prove a failed command changed nothing."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
