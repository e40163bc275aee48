"""Driving real kernels through jupyter_client, as a notebook does, and proving nothing is left behind."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from rik.testing import KernelSession

#: What a sleeping cell prints before it sleeps: the sign that it runs.
SLEEPING = "rik-test: sleeping"


@dataclass
class Kernel:
    km: KernelManager
    kc: BlockingKernelClient

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute ``code``; return its stdout; raise AssertionError with the traceback on an error."""
        return KernelSession(self.km, self.kc).run(code, timeout)

    def interrupt_sleep(self, seconds: int = 60, timeout: float = 20, *, again: bool = False) -> str:
        """Start a cell that says it is sleeping and sleeps; once its words arrive, interrupt it through the kernel
        manager; return the name of the error the cell ends with, once its reply is in.

        The cell runs with ``stop_on_error=False``: its error does not make the kernel abort the requests that
        follow, so the next cell can be sent at once (no waiting out the abort).

        ``again``: interrupt once more, as a user would, when the first one did nothing for half of ``timeout``. Only
        for a kernel that rik is not between (a local kernel's ``interrupt_request`` goes straight to ipykernel,
        and ipykernel 7.4 once let one pass in CI); where rik carries the interrupt, one must be enough."""
        msg_id = self.kc.execute(f"import time; print({SLEEPING!r}, flush=True); time.sleep({seconds})", stop_on_error=False)
        self.wait_iopub(msg_id, lambda m: m["msg_type"] == "stream" and SLEEPING in m["content"]["text"], 30, "sleeping")
        self.km.interrupt_kernel()
        if again:
            try:
                error = self.wait_iopub(msg_id, lambda m: m["msg_type"] == "error", timeout / 2, "the interrupt")
            except AssertionError:
                self.km.interrupt_kernel()
                error = self.wait_iopub(msg_id, lambda m: m["msg_type"] == "error", timeout / 2, "the interrupt")
            self.wait_reply(msg_id, 10)
            return str(error["content"]["ename"])
        error = self.wait_iopub(msg_id, lambda m: m["msg_type"] == "error", timeout, "the interrupt")
        self.wait_reply(msg_id, 10)
        return str(error["content"]["ename"])

    def wait_iopub(self, msg_id: str, wanted: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id and wanted(msg):
                return msg
        raise AssertionError(f"no {what} within {timeout} s")

    def wait_reply(self, msg_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        raise AssertionError(f"no reply to the interrupted cell within {timeout} s")

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
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes (any user) whose command line contains ``text``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if proc.pid != os.getpid() and text in cmd:
            found.append((proc.pid, cmd))
    return found


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content: to prove a failed command changed nothing."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
