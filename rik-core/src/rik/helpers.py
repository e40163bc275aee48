"""Small pure helpers for scheduler plugins (public: plugin authors may import them)."""

from __future__ import annotations

import posixpath
import re

from .errors import UsageError

__all__ = ["memory_amount", "program", "sibling_program", "walltime_seconds"]

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.I)


def program(launch_cmd: str | None, default: str) -> str:
    """The program to run: ``--launch-cmd`` (a name or a full path) or the scheduler's default."""
    return launch_cmd.strip() if launch_cmd and launch_cmd.strip() else default


def sibling_program(launch_cmd: str | None, name: str) -> str:
    """A companion program (``scancel`` for ``srun``) from the same directory when ``--launch-cmd`` is a path."""
    if launch_cmd and "/" in launch_cmd:
        return posixpath.join(posixpath.dirname(launch_cmd.strip()), name)
    return name


def walltime_seconds(text: str) -> int:
    """Seconds in ``[D-]HH:MM:SS``, ``HH:MM``, ``MM`` (as SLURM reads them); a bad value is a UsageError."""
    m = _WALLTIME.match(text.strip())
    if not m:
        raise UsageError(f"bad --walltime {text!r}: use HH:MM:SS, HH:MM, minutes, or D-HH:MM:SS")
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 3600 + parts[1] * 60
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return seconds + int(days or 0) * 86400


def hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def memory_amount(text: str) -> tuple[float, str]:
    """``4G`` → ``(4.0, "G")``; units K, M, G, T (default M); a bad value is a UsageError."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise UsageError(f"bad --memory {text!r}: use a number with K, M, G or T, e.g. 4G")
    return float(m.group(1)), (m.group(2) or "M").upper()


def cancel_command(launch_cmd: str | None, program_name: str, job_id: str | None) -> tuple[str, ...]:
    """``(scancel, ID)``-style cancel argv, the program next to ``--launch-cmd`` when that is a path; ``()`` when
    no job id is known yet (nothing to cancel)."""
    return (sibling_program(launch_cmd, program_name), job_id) if job_id else ()
