"""What ``rik doctor`` reports: one :class:`Check` per step, gathered in a :class:`Report` per kernel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OK", "PROBLEM", "SKIPPED", "Check", "Report"]

OK, PROBLEM, SKIPPED = "ok", "problem", "skipped"


@dataclass(frozen=True)
class Check:
    """One step: ``status`` is ok, problem or skipped; ``fix`` says what to do about a problem."""

    check: str
    where: str
    status: str
    message: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "where": self.where,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }

    def line(self) -> str:
        label = {OK: "ok", PROBLEM: "PROBLEM", SKIPPED: "skipped"}[self.status]
        text = f"  {label:<8} {self.message}"
        return text + (f" -> fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    """The checks of one kernel, in order; ``on_check`` sees each as it is added (the command prints it)."""

    kernel: str
    display_name: str
    path: str
    checks: list[Check] = field(default_factory=list)
    on_check: Callable[[Check], None] | None = field(default=None, repr=False, compare=False)

    def add(self, check: str, where: str, status: str, message: str, fix: str | None = None) -> Check:
        result = Check(check, where, status, message, fix)
        self.checks.append(result)
        if self.on_check is not None:
            self.on_check(result)
        return result

    @property
    def ok(self) -> bool:
        return all(c.status != PROBLEM for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "display_name": self.display_name,
            "path": self.path,
            "ok": self.ok,
            "checks": [c.as_json() for c in self.checks],
        }
