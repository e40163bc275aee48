"""Constants, logging and the small number helpers every part of the benchmarks shares."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = BENCH_DIR.parent
REMOTE_PY = "/usr/bin/python3"
KERNEL_CMD = f"{REMOTE_PY} -m ipykernel_launcher -f {{connection_file}}"
MiB = 1024 * 1024
DASH = "\u2013"  # en dash, for ranges in the tables


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def pct(values: Iterable[float] | None, p: float) -> float | None:
    ordered = sorted(values or [])
    if not ordered:
        return None
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median_ci(values: Iterable[float], conf: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median: the order statistics ``j`` in from either end, ``j``
    as large as keeps the chance that the median lies between them at ``conf`` or more (binomial, p = 1/2). None
    when there are too few values for that chance (fewer than 6 at 95%)."""
    ordered = sorted(values)
    n, j = len(ordered), None
    for k in range(n // 2):
        if sum(math.comb(n, i) for i in range(k + 1, n - k)) / 2**n >= conf:
            j = k
    return None if j is None else (ordered[j], ordered[n - 1 - j])


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:.1f} ms"


def fmt_num(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def spread(values: Iterable[float | None], fmt: Callable[[float], str]) -> str:
    """The median and (min to max) of the values, or the one value."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    med = statistics.median(vals)
    return fmt(med) if len(vals) == 1 else f"{fmt(med)} ({fmt(min(vals))}{DASH}{fmt(max(vals))})"
