"""What every running rik kernel is, where, and in which job: one small file per launcher in Jupyter's runtime
directory, so that ``rik ps`` can list kernels and ``rik gc`` can clean up after a launcher that vanished.

The files hold no secret (no key, no connection file content) and are private to the user (0600 in a 0700
directory) all the same.
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

__all__ = ["KernelState", "load_all", "state_dir"]


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
        return b"rik" in cmdline and b"--kernel-config" in cmdline


def load_all() -> Iterator[KernelState]:
    for path in sorted(state_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            record = KernelState(**{k: v for k, v in data.items() if k in KernelState.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            continue
        record.path = path
        yield record
