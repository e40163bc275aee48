"""Helpers for tests of `rik manage` refusals: a refused command prints one exact line and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def kernels(home: Path) -> Path:
    """The kernels folder of the test's private Jupyter (the ``jupyter_home`` fixture)."""
    return home / "data" / "kernels"


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``path`` (folders too) with its mode and content: a refused command changed nothing."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): (p.stat().st_mode, b"" if p.is_dir() else p.read_bytes())
        for p in sorted(path.rglob("*"))
    }


def assert_refused(rik: Any, home: Path, args: list[str], code: int, message: str) -> None:
    """``rik ARGS`` (with one kernel already there) exits ``code`` with exactly ``rik: error: MESSAGE`` on standard
    error, nothing on standard output, and the kernels folder byte for byte as it was."""
    rik("manage", "--add", "-n", "Existing", check=True)
    before = snapshot(kernels(home))
    result = rik(*args)
    assert (result.code, result.err, result.out) == (code, f"rik: error: {message}\n", ""), result
    assert snapshot(kernels(home)) == before
