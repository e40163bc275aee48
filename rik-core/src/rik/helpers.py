"""Small pure helpers for scheduler plugins (public: plugin authors may import them)."""

from __future__ import annotations

import posixpath
import re

from .errors import UsageError

__all__ = [
    "cancel_command",
    "hms",
    "memory_amount",
    "normal_memory",
    "normal_walltime",
    "program",
    "sibling_program",
    "walltime_seconds",
]

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")
_HMS = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.I)
_UNITS = "KMGT"
#: The walltime forms each style accepts, for messages.
WALLTIME_FORMS = {
    "hms": "H:MM:SS, e.g. 0:30:00 or 48:00:00",
    "slurm": "minutes, MM:SS, H:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (as SLURM reads them)",
}


def program(launch_cmd: str | None, default: str) -> str:
    """The program to run: ``--launch-cmd`` (a name or a full path) or the scheduler's default."""
    return launch_cmd.strip() if launch_cmd and launch_cmd.strip() else default


def sibling_program(launch_cmd: str | None, name: str) -> str:
    """A companion program (``scancel`` for ``srun``) from the same directory when ``--launch-cmd`` is a path."""
    if launch_cmd and "/" in launch_cmd:
        return posixpath.join(posixpath.dirname(launch_cmd.strip()), name)
    return name


def walltime_seconds(text: str, style: str = "legacy") -> int:
    """Seconds in a walltime; a bad value is a :class:`~rik.UsageError` that says which forms work.

    ``style`` says how the scheduler reads it:

    - ``"hms"``: only ``H:MM:SS`` (hours may exceed 24), the one form every scheduler reads the same way. Use it
      for schedulers whose own short forms differ (``30:00`` is 30 minutes to PBS, 30 hours to LSF).
    - ``"slurm"``: SLURM's forms: ``minutes``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
    - ``"legacy"`` (the default, kept for plugins written against rik 0.1): ``[D-]HH:MM:SS``, ``HH:MM``, ``MM``.

    Every style reads ``H:MM:SS`` the same way, which is the form ``rik manage`` stores (see
    :func:`normal_walltime`).
    """
    raw = text.strip()
    if style == "hms":
        m = _HMS.match(raw)
        if not m:
            raise UsageError(f"bad --walltime {text!r}: use {WALLTIME_FORMS['hms']}")
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    if style == "slurm":
        m = _WALLTIME.match(raw)
        if not m:
            raise UsageError(f"bad --walltime {text!r}: use {WALLTIME_FORMS['slurm']}")
        days, a, b, c = m.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
            parts += [0] * (3 - len(parts))
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2] + int(days) * 86400
        elif len(parts) == 1:  # minutes
            seconds = parts[0] * 60
        elif len(parts) == 2:  # MM:SS
            seconds = parts[0] * 60 + parts[1]
        else:  # HH:MM:SS
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        return seconds
    if style != "legacy":
        raise ValueError(f"unknown walltime style {style!r}")
    m = _WALLTIME.match(raw)
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


def normal_walltime(text: str, style: str = "hms") -> str:
    """``text`` read the way ``style`` says (see :func:`walltime_seconds`), written as ``H:MM:SS``; a zero or bad
    walltime is a :class:`~rik.UsageError`."""
    seconds = walltime_seconds(text, style)
    if seconds <= 0:
        raise UsageError(f"bad --walltime {text!r}: a time limit must be longer than 0")
    return hms(seconds)


def hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def memory_amount(text: str) -> tuple[float, str]:
    """``4G`` → ``(4.0, "G")``: a whole amount and its unit, K, M, G or T (binary, as schedulers read them; no unit
    is M). A fraction becomes a whole amount of a smaller unit (``0.5G`` → ``(512.0, "M")``); ``GB`` and ``GiB``
    are ``G``. A bad value, zero, or less than 1K is a :class:`~rik.UsageError`."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise UsageError(f"bad --memory {text!r}: use a whole number with K, M, G or T, e.g. 4G or 512M")
    amount, unit = float(m.group(1)), (m.group(2) or "M").upper()
    index = _UNITS.index(unit)
    while amount != int(amount) and index > 0:
        amount, index = amount * 1024, index - 1
    if amount <= 0:
        raise UsageError(f"bad --memory {text!r}: give more than 0, e.g. 4G or 512M")
    if amount != int(amount):
        raise UsageError(f"bad --memory {text!r}: that is {amount:g}K, not a whole number of K")
    while index < len(_UNITS) - 1 and amount >= 1024 and amount % 1024 == 0:
        amount, index = amount / 1024, index + 1
    return float(amount), _UNITS[index]


def normal_memory(text: str) -> str:
    """``0.5G`` → ``512M``, ``8GiB`` → ``8G``, ``2048M`` → ``2G``: the form ``rik manage`` stores."""
    amount, unit = memory_amount(text)
    return f"{int(amount)}{unit}"


def cancel_command(launch_cmd: str | None, program_name: str, job_id: str | None) -> tuple[str, ...]:
    """``(scancel, ID)``-style cancel argv, the program next to ``--launch-cmd`` when that is a path; ``()`` when
    no job id is known yet (nothing to cancel)."""
    return (sibling_program(launch_cmd, program_name), job_id) if job_id else ()
