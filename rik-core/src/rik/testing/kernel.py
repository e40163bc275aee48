"""Running rik and its kernels from a plugin's tests: ``rik manage`` as a user types it, and a kernel started and
driven through jupyter_client as a notebook does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["KernelSession", "add_kernel", "python_kernel_cmd", "rik_command", "running_kernel"]


def python_kernel_cmd() -> str:
    """An ipykernel of this Python, as ``--kernel-cmd``."""
    return f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}"


def rik_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``rik ARGS…`` (this Python's rik) and return what it did; never raises on a failure."""
    return subprocess.run(
        [sys.executable, "-m", "rik", *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def add_kernel(*args: str) -> str:
    """``rik manage --add ARGS…``; the new kernel's name. A failure raises AssertionError with rik's message."""
    done = rik_command("manage", "--add", *args)
    m = re.search(r"^(?:Added|Would add) kernel '([^']+)'", done.stdout, re.M)
    if done.returncode != 0 or not m:
        raise AssertionError(f"rik manage --add failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return m.group(1)


@dataclass
class KernelSession:
    """A started kernel: :attr:`manager` and :attr:`client` are jupyter_client's own."""

    manager: Any  # jupyter_client.manager.KernelManager
    client: Any  # jupyter_client.blocking.client.BlockingKernelClient

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute ``code`` and return what it printed; an error in the kernel raises AssertionError."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook, stop_on_error=False)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"{code!r} failed: {errors or reply['content']}")
        return "".join(out)

    @property
    def launcher_pid(self) -> int | None:
        """The pid of the local rik launcher (kernel.json's process)."""
        provisioner = self.manager.provisioner
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None) or getattr(provisioner, "pid", None)


@contextmanager
def running_kernel(name: str, startup_timeout: float = 60) -> Iterator[KernelSession]:
    """Start kernel ``name`` as a notebook would, yield it, and shut it down (gracefully) on the way out."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name=name, startup_timeout=startup_timeout)
    try:
        yield KernelSession(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
