"""What every running rik kernel is, where, and in which job: one small file per launcher in Jupyter's runtime
directory, so that ``rik ps`` can list kernels and ``rik gc`` can clean up after a launcher that vanished.

The files hold no secret (no key, no connection file content) and are private to the user (0600 in a 0700
directory) all the same. A kernel that can be reattached (``rik attach``, a restart in place, the provisioner after
a Jupyter server restart) also has a *key file* (0600) in rik's private runtime directory, which is local to the
machine where it can be (``$XDG_RUNTIME_DIR``), never beside the record; it goes with the record.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KernelState", "key_path", "load", "load_all", "state_dir"]


def state_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    path = Path(os.environ.get("RIK_STATE_DIR") or Path(jupyter_runtime_dir()) / "rik")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class KernelState:
    """One launcher's record. ``config`` is the kernel's configuration as in its kernelspec."""

    name: str
    launcher_pid: int
    config: dict[str, Any]
    connection_file: str
    started: float = field(default_factory=time.time)
    job_id: str | None = None
    node: str | None = None
    remote_dir: str | None = None
    kernel_pid: int | None = None
    ready: bool = False
    # Durable kernels: the holder on the submit host and how far its output was read; what the launcher is doing
    # (``attached``, ``reconnecting``, ``parked``: the kernel ended and its job waits for a restart, ``detached``);
    # when it was last in touch with the kernel; the window it may live unconnected; where the kernel listens.
    hold_dir: str | None = None
    holder_pid: int | None = None
    offset: int = 0
    status: str = "starting"
    last_contact: float | None = None
    grace: float | None = None
    park_until: float | None = None
    allocated_at: float | None = None
    walltime_seconds: float | None = None
    endpoints: dict[str, str] | None = None
    mode: str | None = None
    session_name: str | None = None  # JPY_SESSION_NAME: the notebook the kernel belongs to
    kernel_name: str | None = None  # the kernelspec's name (rik_slurm_...)
    path: Path | None = field(default=None, repr=False)

    def save(self) -> None:
        """Write atomically; the first save picks the file."""
        directory = state_dir()
        if self.path is None:
            self.path = directory / f"{self.name}.json"
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            key_path(self.name).unlink()

    # -- the key, for reattaching ----------------------------------------------------------------------------
    def save_key(self, key: str) -> None:
        path = key_path(self.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)

    def key(self) -> str | None:
        try:
            return key_path(self.name).read_text()
        except OSError:
            return None

    def ends_at(self, now: float | None = None) -> float | None:
        """When the kernel will be ended if nobody connects: its window after the last contact (a kernel still
        computing lives on until its cell is done), the end of a parked job's wait, and never past walltime."""
        ends: list[float] = []
        if self.status == "parked" and self.park_until:
            ends.append(self.park_until)
        elif self.last_contact and self.grace is not None:
            ends.append(self.last_contact + max(self.grace, 6))
        if self.allocated_at and self.walltime_seconds:
            ends.append(self.allocated_at + self.walltime_seconds)
        return min(ends) if ends else None

    def launcher_alive(self) -> bool:
        """The launcher still runs (and is a rik launcher: pids are reused)."""
        try:
            with open(f"/proc/{self.launcher_pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            try:
                os.kill(self.launcher_pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return b"rik" in cmdline and (b"--kernel-config" in cmdline or b"\0attach\0" in cmdline)


def key_path(name: str) -> Path:
    from .ssh import runtime_dir

    return runtime_dir() / f"{name}.key"


def load(path: Path) -> KernelState | None:
    try:
        data = json.loads(path.read_text())
        record = KernelState(**{k: v for k, v in data.items() if k in KernelState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None
    record.path = path
    return record


def load_all() -> Iterator[KernelState]:
    for path in sorted(state_dir().glob("*.json")):
        record = load(path)
        if record is not None:
            yield record
