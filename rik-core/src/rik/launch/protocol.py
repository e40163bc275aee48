"""The lines the remote side prints for rik, all starting with ``RIK-``: a pure parser, testable alone.

From the bootstrap (inside the job): ``RIK-START<pid>`` (a typed starter took over the job's shell), ``RIK-NODE
host [job] dir``, ``RIK-WORKDIR dir``, ``RIK-PID pid``, ``RIK-READY ipc PREFIX | tcp P1..P5 | direct``,
``RIK-RETRY why``, ``RIK-ERROR why``, ``RIK-EXIT status`` (the kernel ended; the job waits for a restart),
``RIK-RESTART`` (a new kernel starts in the same job), ``RIK-END status`` (the bootstrap ends, and the job with it).

From the holder (on the submit host): ``RIK-HOLD dir pid`` (made), ``RIK-ATTACHED`` (from here on the stream is
the job's output), ``RIK-GONE`` (the holder is no longer there), ``RIK-HELD-EXIT status`` (the job's client ended).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["START", "Marker", "parse_marker", "split_lines"]

_MARKER = re.compile(
    r"^RIK-(NODE|WORKDIR|READY|PID|EXIT|ERROR|RETRY|RESTART|END|HOLD|ATTACHED|GONE|HELD-EXIT)\b ?(.*)$"
)
#: Printed by the shell the starter hands over to; never by the echo of the typed starter line.
START = re.compile(r"RIK-START\d+")


@dataclass(frozen=True)
class Marker:
    kind: str  # NODE, READY, ... (without the RIK- prefix)
    words: tuple[str, ...]
    text: str  # everything after the kind

    def status(self) -> int | None:
        """The integer status of ``EXIT``/``END``/``HELD-EXIT`` lines (``None`` when missing)."""
        if self.words and self.words[0].lstrip("-").isdigit():
            return int(self.words[0])
        return None


def parse_marker(line: str) -> Marker | None:
    """The marker on ``line`` (surrounding blanks and a terminal's ``\\r`` ignored), or ``None``."""
    m = _MARKER.match(line.strip())
    if not m:
        return None
    rest = m.group(2).strip()
    return Marker(m.group(1), tuple(rest.split()), rest)


def split_lines(pending: bytes, data: bytes) -> tuple[list[str], bytes]:
    """Complete lines of ``pending + data`` (``\\r\\n`` and ``\\r`` are line ends too), and the incomplete rest."""
    buf = pending + data
    text = buf.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    *lines, rest = text.split("\n")
    return lines, rest.encode()
