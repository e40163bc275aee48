"""The plots (PNG, matplotlib): targets against their limits, start times against each floor, scaling with N,
restart and reconnect. Written next to latest.md, overwritten by every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

from .contenders import BY_KEY
from .util import DASH

PAIRS = [  # rik contender, its start floor
    ("rik-local", "local"),
    ("rik-gw", "raw-gw"),
    ("rik-chain", "raw-chain"),
    ("rik-slurm", "hand-slurm"),
    ("rik-sge", "hand-sge"),
]
GREEN, RED, GREY, BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"


def _values(samples: dict[str, Any], key: str, phase: str, name: str) -> list[float]:
    return [r[phase][name] for r in samples.get(key, []) if r.get(phase, {}).get(name) is not None]


def overview(payload: dict[str, Any], path: Path) -> None:
    targets = [t for t in payload["summary"]["targets"] if t.get("floor")]
    values = [t for t in payload["summary"]["targets"] if not t.get("floor")]
    height = 0.38 * len(targets) + 1.4 + 0.13 * len(values)
    fig, ax = plt.subplots(figsize=(9, height))
    for i, t in enumerate(reversed(targets)):
        if t["median"] is None:
            ax.text(0.02, i, "not available", va="center", fontsize=8, color=GREY)
            continue
        color = GREY if t["met"] is None else (GREEN if t["met"] else RED)  # grey: information, no target
        ax.barh(i, t["median"] - 1, left=1, color=color, alpha=0.75)  # from the floor (1x) to rik
        ax.plot([t["min"], t["max_seen"]], [i, i], color="black", lw=1)
        if not t.get("info"):
            ax.plot([t["max"]] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
    ax.set_yticks(range(len(targets)), [t["name"] for t in reversed(targets)], fontsize=8)
    ax.axvline(1.0, color=GREY, lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel(f"rik / its floor, same run (median, min{DASH}max over rounds; black tick: the target)")
    ax.set_title(f"rik against its floors — {payload['meta']['date']}", fontsize=10)
    lines = [
        f"{'met' if t['met'] else ('NOT met' if t['met'] is False else 'n/a')}: {t['name']}: "
        + ("not available" if t["median"] is None else f"{t['median']:.2f}".rstrip("0").rstrip("."))
        + f" (target ≤ {t['max']:g})"
        for t in values
    ]
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, (0.13 * len(values) + 0.1) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def starts(samples: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, phase in zip(axes, ("cold", "warm"), strict=True):
        data, labels, colors = [], [], []
        for rik, floor in PAIRS:
            for key, color in ((floor, GREY), (rik, BLUE)):
                vals = _values(samples, key, phase, "start")
                if vals:
                    data.append(vals)
                    labels.append(BY_KEY[key].label.replace(" (floor)", "\n(floor)").replace(" (", "\n("))
                    colors.append(color)
        local = _values(samples, "local", phase, "start")
        if not data:
            continue
        box = ax.boxplot(data, vert=False, patch_artist=True, widths=0.6)
        for i, (patch, color) in enumerate(zip(box["boxes"], colors, strict=True)):
            patch.set_facecolor(color)
            patch.set_alpha(0.5)
            ax.plot(data[i], [i + 1] * len(data[i]), "k.", ms=3)
        if local:
            ax.axvline(sorted(local)[len(local) // 2], color=GREEN, ls="--", lw=1, label="local ipykernel (median)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=6)
        ax.set_title(f"start to first kernel_info reply, {phase}", fontsize=9)
        ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for key, color in (("local", GREEN), ("rik-gw", BLUE), ("rik-chain", RED)):
        mine = sorted((r for r in rows if r.get("contender") == key and "error" not in r), key=lambda r: r["n"])
        if not mine:
            continue
        n = [r["n"] for r in mine]
        label = BY_KEY[key].label
        axes[0].plot(n, [r["start_p50"] for r in mine], "o-", color=color, label=f"{label} p50")
        axes[0].plot(n, [r["start_p95"] for r in mine], "o:", color=color, label=f"{label} p95")
        if key != "local":
            conns = [max(r["ssh_conns"].values()) if r["ssh_conns"] else 0 for r in mine]
            axes[1].plot(n, conns, "o-", color=color, label=label)
        axes[2].plot(n, [r["local_rss_mib"] + r["remote_rss_mib"] for r in mine], "o-", color=color, label=label)
    axes[1].axhline(1, color="black", lw=1, ls="--", label="target: 1")
    axes[1].set_ylim(0, max(4, axes[1].get_ylim()[1] + 1))
    for ax, title in zip(
        axes,
        ("start time of each kernel (s)", "ssh connections, busiest host", "RSS, local + remote (MiB)"),
        strict=True,
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("kernels started at once")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def restarts(samples: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    keys = [k for k in ("local", "rik-local", "rik-gw", "rik-chain", "rik-slurm", "rik-sge") if k in samples]
    for ax, name, limit in ((axes[0], "restart", 1.5), (axes[1], "reconnect", 3.0)):
        shown = [k for k in keys if name == "restart" or k not in ("local", "rik-local")]
        for i, key in enumerate(shown):
            vals = _values(samples, key, name, name)
            if vals:
                ax.bar(i, sorted(vals)[len(vals) // 2], color=GREY if key == "local" else BLUE, alpha=0.7)
                ax.plot([i] * len(vals), vals, "k.", ms=4)
            else:
                ax.text(i, 0.1, "not available", rotation=90, fontsize=7, ha="center", va="bottom", color=RED)
        floor = _values(samples, "local", "restart", "restart")
        if name == "restart" and floor:
            ax.axhline(limit * sorted(floor)[len(floor) // 2], color="black", ls="--", lw=1, label="target: 1.5x local")
            ax.set_title("restart_kernel to first reply (s)", fontsize=9)
        elif name == "reconnect":
            ax.axhline(limit, color="black", ls="--", lw=1, label="target: 3 s")
            ax.set_title("every local ssh killed, to the first answered cell (s)", fontsize=9)
        ax.set_ylim(0, max(ax.get_ylim()[1], limit * 1.2))
        ax.set_xticks(range(len(shown)), shown, fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(payload: dict[str, Any], out: Path) -> dict[str, str]:
    made = {}
    samples = payload.get("samples") or {}
    overview(payload, out / "overview.png")
    made["rik over its floors"] = "overview.png"
    if samples:
        starts(samples, out / "starts.png")
        made["start times against each floor"] = "starts.png"
        restarts(samples, out / "restart-reconnect.png")
        made["restart and reconnect"] = "restart-reconnect.png"
    if payload.get("scaling"):
        scaling(payload["scaling"], out / "scaling.png")
        made["scaling with N kernels at once"] = "scaling.png"
    return made
