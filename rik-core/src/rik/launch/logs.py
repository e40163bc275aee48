"""The launcher's log: one stream (stderr, which front ends show or keep), and never the kernel's key."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("rik")


class Redact(logging.Filter):
    """Replaces every registered secret in a record's message with ``<redacted>``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                if secret and secret in text:
                    text = text.replace(secret, "<redacted>")
            record.msg, record.args = text, None
        return True


redact = Redact()

#: A progress line is on the terminal (a queued job's wait): the next log line clears it first.
progress = {"shown": False}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    def emit(self, record: logging.LogRecord) -> None:
        if progress["shown"]:
            progress["shown"] = False
            self.stream.write("\r\033[K")
        super().emit(record)


def setup_logging(verbose: bool) -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("[rik %(asctime)s.%(msecs)03d] %(message)s", "%H:%M:%S"))
    handler.addFilter(redact)
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
