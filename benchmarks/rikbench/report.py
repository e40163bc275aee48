"""From samples to figures (CONTENDER.PHASE.FIGURE, per round); the targets of ``targets.toml`` held against
them (each a ratio to its floor in the same round, or a value); results/latest.md, the targets first."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import Any

import tomllib

from .contenders import BY_KEY, CANCEL_PROBES
from .util import BENCH_DIR, DASH, fmt_num, median, median_ci, pct, spread

TARGETS = BENCH_DIR / "targets.toml"
PHASES = ("cold", "warm", "restart", "reconnect")
NOTES = ("restart_note", "reconnect_note", "interrupt_note", "error")


def _phase_figures(sample: dict[str, Any]) -> dict[str, Any]:
    out = {k: sample.get(k) for k in ("start", "interrupt", "shutdown_gone", "shutdown_returned", "queue_gone")}
    out |= {k: sample.get(k) for k in ("restart", "reconnect", "launcher_hwm_mib", "restart_same_job")}
    rtt = sample.get("rtt")
    out["rtt_p50"], out["rtt_p95"] = pct(rtt, 50), pct(rtt, 95)
    rates = sample.get("mib_s")
    out["mib_s"] = max(rates) if rates else None  # the best of the samples: noise only slows a sample down
    return out


def figures(payload: dict[str, Any]) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """Every figure as a list indexed by round (one entry for the scaling and login figures), and the notes that
    say why a figure is missing."""
    rounds = payload["meta"]["rounds"]
    figs: dict[str, list[Any]] = {}
    notes: dict[str, list[str]] = {}

    def put(key: str, r: int, value: Any, size: int = rounds) -> None:
        figs.setdefault(key, [None] * size)[r] = value

    for key, entries in (payload.get("samples") or {}).items():
        for entry in entries:
            r = entry["round"]
            if "probe" in entry:
                put(f"{key}.probe.queue_gone", r, entry["probe"].get("queue_gone"))
                if entry["probe"].get("error"):
                    notes.setdefault(f"{key}.probe.queue_gone", []).append(entry["probe"]["error"])
                continue
            for phase in PHASES:
                sample = entry.get(phase)
                if sample is None:
                    continue
                for name, value in _phase_figures(sample).items():
                    put(f"{key}.{phase}.{name}", r, value)
                for note in NOTES:
                    if sample.get(note) not in (None, "ok"):
                        target = {
                            "restart_note": "restart",
                            "reconnect_note": "reconnect",
                            "interrupt_note": "interrupt",
                        }
                        notes.setdefault(f"{key}.{phase}.{target.get(note, 'start')}", []).append(str(sample[note]))
            for name in ("shutdown_gone", "queue_gone"):
                both = [entry[p].get(name) for p in ("cold", "warm") if p in entry and "error" not in entry[p]]
                put(f"{key}.shutdown.{name}", r, median(both) if all(v is not None for v in both) else None)
    for key, rates in (payload.get("throughput") or {}).items():
        if key.endswith(".error"):
            notes.setdefault(f"pairs.{key.split('.')[0]}.mib_s", []).extend(rates)
        else:
            figs[f"pairs.{key}.mib_s"] = list(rates)
    for row in payload.get("scaling") or []:
        if "error" in row:
            notes.setdefault(f"scale.{row['contender']}.x{row['n']}.start_p50", []).append(row["error"])
            continue
        base = f"scale.{row['contender']}.x{row['n']}"
        for name in ("all_ready", "start_p50", "start_p95", "launcher_hwm_mib_each", "local_rss_mib", "remote_rss_mib"):
            put(f"{base}.{name}", row["round"], row.get(name), 1)
        put(f"{base}.conns_per_host", row["round"], max(row["ssh_conns"].values()) if row.get("ssh_conns") else None, 1)
    logins = (payload.get("logins") or {}).get("scenarios", {})
    for key, scenario in logins.items():
        steps = scenario["steps"]
        before = Counter()
        for step in steps:
            if step["step"] != "every local ssh killed":
                before.update(step["prompts"])
            else:
                put("logins.reconnect.max_per_host", 0, max(step["prompts"].values(), default=0), 1)
        put(f"logins.{key}.max_per_host", 0, max(before.values(), default=0), 1)
    return figs, notes


def _ratio(a: Any, b: Any, invert: bool) -> float | None:
    if a is None or b is None or isinstance(a, bool) or (b if not invert else a) == 0:
        return None
    return b / a if invert else a / b


def evaluate(target: dict[str, Any], figs: dict[str, list[Any]], notes: dict[str, list[str]]) -> dict[str, Any]:
    fig, floor = target["figure"], target.get("floor")
    mine = figs.get(fig, [])
    if floor:
        theirs = figs.get(floor, [])
        values = [_ratio(a, b, target.get("invert", False)) for a, b in zip(mine, theirs, strict=False)]
    else:
        values = list(mine)
    vals = [v for v in values if v is not None and not isinstance(v, bool)]
    out = {**target, "values": values, "median": None, "min": None, "max_seen": None, "met": None, "why": ""}
    if not vals:
        why = sorted(set(notes.get(fig, []) + (notes.get(floor, []) if floor else [])))
        out["why"] = "; ".join(why) or ("not measured in this run" if fig not in figs else "not available")
        return out
    med = statistics.median(vals)
    out.update(median=med, min=min(vals), max_seen=max(vals))
    met = med <= target["max"]
    reasons = []
    if "spread" in target and len(vals) > 1:
        # How well the run pins the ratio down: the width of the median's 95% confidence interval over the median.
        # It narrows with more blocks. The blocks' own interquartile range (the machine's noise) is shown beside it.
        out["iqr_seen"] = ((pct(vals, 75) or med) - (pct(vals, 25) or med)) / med
        ci = median_ci(vals)
        out["ci"] = ci
        out["spread_seen"] = spread = (ci[1] - ci[0]) / med if ci else None
        if spread is None or spread > target["spread"]:
            met = False
            reasons.append(
                f"95% CI {spread:.0%} wide > {target['spread']:.0%}" if ci else "too few blocks for a 95% CI"
            )
    if "require" in target:
        same = [v for v in figs.get(target["require"], []) if v is not None]
        if not same or not all(same):
            met = False
            reasons.append("not in place: the restart made a new job")
    out["met"] = None if target.get("info") else met
    out["why"] = "; ".join(reasons)
    return out


def summarize(payload: dict[str, Any]) -> dict[str, Any]:
    figs, notes = figures(payload)
    targets = tomllib.loads(TARGETS.read_text())["target"]
    return {"figures": figs, "notes": notes, "targets": [evaluate(t, figs, notes) for t in targets]}


def s2(x: float) -> str:
    return f"{x:.2f} s"


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def one(x: float) -> str:
    return f"{x:.1f}"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def normalize(item: str) -> str:
    """A leftover without what differs between kernels (ids, scratch paths), to count alike ones."""
    item = re.sub(r"/tmp/rkb[^/\s]+/ri-work", "(remote_ikernel's --workdir)", item)
    item = re.sub(r"/tmp/rkb[^/\s]+", "(scratch)", item)
    item = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", item)
    item = re.sub(r"/tmp/(rik|handbench)-[\w.-]+", r"/tmp/\1-XXXX", item)
    return re.sub(r"\s+", " ", item)


def targets_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| target | figure / floor | measured | limit | met |", "| --- | --- | --- | --- | --- |"]
    for t in summary["targets"]:
        what = f"`{t['figure']}`" + (f" / `{t['floor']}`" if t.get("floor") else "")
        fmt = ratio if t.get("floor") else (lambda v: f"{v:.2f}" if isinstance(v, float) else f"{v}")
        measured = spread(t["values"], fmt) if t["median"] is not None else "not available"
        if t.get("ci"):
            lo, hi = t["ci"]
            measured += (
                f", 95% CI {ratio(lo)}{DASH}{ratio(hi)} ({t['spread_seen']:.0%} wide), blocks' IQR {t['iqr_seen']:.0%}"
            )
        if t["why"]:
            measured += f" ({t['why']})"
        limit = "(information)" if t.get("info") else f"≤ {t['max']:g}" + ("x" if t.get("floor") else "")
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['name']} | {what} | {measured} | {limit} | {met} |")
    return lines


def contenders_table(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    head = (
        "| contender | start cold | start warm | round trip p50 / p95 (ms) | IOPub MiB/s (best of samples) | interrupt (ms) "
        "| shutdown → all gone | → job gone | restart | reconnect | launcher peak RSS (MiB) | processes local + remote |"
    )
    lines = [head, "| " + " | ".join(["---"] * 12) + " |"]
    for key, rows in samples.items():
        if key in CANCEL_PROBES:
            continue

        def vals(phase: str, name: str, fn: Any = None, rows: list = rows) -> list[Any]:
            out = [r.get(phase, {}).get(name) for r in rows]
            return [None if v is None else (fn(v) if fn else v) for v in out]

        both = lambda name: vals("cold", name) + vals("warm", name)  # noqa: E731
        rtt = f"{spread(vals('cold', 'rtt', lambda v: pct(v, 50)), ms)} / {spread(vals('cold', 'rtt', lambda v: pct(v, 95)), ms)}"
        notes = sorted(
            {n for n in vals("reconnect", "reconnect_note") + vals("restart", "restart_note") if n and n != "ok"}
        )
        reconnect = (
            spread(vals("reconnect", "reconnect"), s2)
            if any(vals("reconnect", "reconnect"))
            else ("; ".join(notes) or "—")
        )
        same = [v for v in vals("restart", "restart_same_job") if v is not None]
        restart = spread(vals("restart", "restart"), s2)
        if BY_KEY[key].scheduler and same:
            restart += " (same job)" if all(same) else " (a new job)"
        lp = [r.get("cold", {}).get("local_processes") for r in rows]
        rp = [r.get("cold", {}).get("remote_processes") for r in rows]
        procs = "—" if not any(lp) else f"{max(v or 0 for v in lp)} + {max(v or 0 for v in rp)}"
        warm = spread(vals("warm", "start"), s2) + (" (no master)" if BY_KEY[key].kind != "rik" else "")
        lines.append(
            f"| {BY_KEY[key].label} | {spread(vals('cold', 'start'), s2)} | {warm} | {rtt} | "
            f"{spread(vals('cold', 'mib_s', max), one)} | {spread(vals('warm', 'interrupt'), ms)} | "
            f"{spread(both('shutdown_gone'), s2)} | {spread(both('queue_gone'), s2)} | {restart} | {reconnect} | "
            f"{spread(vals('cold', 'launcher_hwm_mib'), one) if key != 'local' else '(is the kernel)'} | {procs} |"
        )
    for key in CANCEL_PROBES:
        if key in samples:
            gone = [r["probe"].get("queue_gone") for r in samples[key]]
            lines.append(
                f"| {key.split('-')[1]} job cancelled by hand (floor) | | | | | | | {spread(gone, s2)} | | | | |"
            )
    return lines


def start_paths(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Medians over rounds of each start's timeline (process start times, 10 ms clock ticks), ms after start_kernel."""
    cols = ("launcher", "first_child", "remote", "kernel", "tunnel", "ready")
    lines = [
        "| contender | phase | launcher runs | its first child (ssh) | first remote process | kernel's Python starts "
        "| tunnel's ssh starts | first reply |",
        "| " + " | ".join(["---"] * 8) + " |",
    ]
    for key, rows in samples.items():
        if key in CANCEL_PROBES or key == "local":
            continue
        for phase in ("cold", "warm"):
            paths = [r.get(phase, {}).get("path") or {} for r in rows]
            if not any(paths):
                continue
            cells = []
            for name in cols:
                v = median(p.get(name) for p in paths)
                cells.append("—" if v is None else f"{v * 1000:.0f}")
            lines.append(f"| {BY_KEY[key].label} | {phase} | " + " | ".join(cells) + " |")
    return lines


def leftovers(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for key, rows in samples.items():
        if key in CANCEL_PROBES:
            continue
        counted: dict[str, int] = {}
        errors, retried = [], []
        for r in rows:
            for p in PHASES:
                sample = r.get(p, {})
                for item in dict.fromkeys(normalize(i) for i in sample.get("left", [])):
                    label = item + (f" (after the {p})" if p in ("restart", "reconnect") else "")
                    counted[label] = counted.get(label, 0) + 1
                if "error" in sample:
                    errors.append(f"round {r['round']} {p}: {sample['error']}")
                if "retried_after" in sample:
                    retried.append(f"round {r['round']} {p}: {sample['retried_after']}")
        items = [f"{item} ({n}x)" for item, n in sorted(counted.items())]
        lines.append(f"- {BY_KEY[key].label}: " + ("nothing" if not items else "; ".join(items)))
        if errors:
            lines.append(f"  - failed: {'; '.join(errors)}")
        if retried:
            lines.append(f"  - failed once, then passed on a retry: {'; '.join(retried)}")
    return lines


def scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| kernels at once | ready | all ready | start p50 | start p95 | launcher peak RSS each (MiB) | local RSS (MiB) "
        "| remote RSS (MiB) | ssh connections per host | shutdown → all gone |",
        "| " + " | ".join(["---"] * 10) + " |",
    ]
    for row in rows:
        label = f"{BY_KEY[row['contender']].label} x{row['n']}"
        if "error" in row:
            lines.append(f"| {label} | failed: {row['error']} |" + " |" * 8)
            continue
        conns = ", ".join(f"{h.removeprefix('rik-')} {n}" for h, n in row["ssh_conns"].items()) or "—"
        lines.append(
            f"| {label} | {row['ready']}/{row['n']} | {spread([row['all_ready']], s2)} | {spread([row['start_p50']], s2)} | "
            f"{spread([row['start_p95']], s2)} | {fmt_num(row['launcher_hwm_mib_each'])} | {row['local_rss_mib']:.0f} | "
            f"{row['remote_rss_mib']:.0f} | {conns} | {spread([row['shutdown_gone']], s2)} |"
        )
    return lines


def logins_table(logins: dict[str, Any]) -> list[str]:
    if "error" in logins:
        return [f"Not measured: {logins['error']}"]
    hosts = logins["chain"]
    lines = [
        f"User `{logins['user']}` (password only) through {' → '.join(hosts)}, `--askpass` a program that counts its prompts.",
        "",
        "| scenario | step | result | " + " | ".join(f"prompts {h}" for h in hosts) + " |",
        "| " + " | ".join(["---"] * (3 + len(hosts))) + " |",
    ]
    for scenario in logins["scenarios"].values():
        for step in scenario["steps"]:
            counts = " | ".join(str(step["prompts"].get(h, 0)) for h in hosts)
            lines.append(f"| {scenario['title']} | {step['step']} | {step['result']} | {counts} |")
    return lines


def markdown(payload: dict[str, Any]) -> str:
    meta, summary = payload["meta"], payload["summary"]
    lines = [
        f"# rik benchmarks — {meta['date']}",
        "",
        f"{meta['machine']}; machine load: before {payload['load']['before']}, after {payload['load']['after']} "
        f"(other engineers' tests share the cores). {meta['rounds']} rounds, contenders interleaved; medians with "
        f"(min{DASH}max) over rounds; {meta['cells']} cells per round-trip sample; {meta['mib_samples']} x {meta['mib']} MiB "
        f"per throughput sample (the best counts). Wall time {meta['wall_time_s']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
        f"## Targets (`benchmarks/targets.toml`): rik over its floor, per round, median (min{DASH}max)",
        "",
        *targets_table(summary),
    ]
    samples = payload.get("samples") or {}
    if samples:
        lines += [
            "",
            "## Every contender",
            "",
            *contenders_table(samples),
            "",
            "Left behind after shutdown:",
            "",
            *leftovers(samples),
            "",
            "## Where a start goes: ms after start_kernel (process start times, to a 10 ms tick; medians over rounds)",
            "",
            *start_paths(samples),
        ]
    if payload.get("scaling"):
        lines += ["", "## N kernels started at once", "", *scaling_table(payload["scaling"])]
    if payload.get("logins"):
        lines += ["", "## Password prompts (one login per host)", "", *logins_table(payload["logins"])]
    if payload.get("cli"):
        lines += [
            "",
            "## Command start-up (five kernels installed)",
            "",
            f"| command | median (min{DASH}max) ms |",
            "| --- | --- |",
        ]
        for name, v in payload["cli"].items():
            lines.append(f"| `{name}` | {median(v) * 1000:.0f} ({min(v) * 1000:.0f}{DASH}{max(v) * 1000:.0f}) |")
    prof = payload.get("profiles")
    if prof:
        imp = prof["importtime"]
        lines += [
            "",
            "## Where the launcher's start goes",
            "",
            f"`python -X importtime` of a launcher (rik ssh → rik-gw): {imp['total_ms']:.0f} ms of imports; "
            f"`python -c pass` takes {prof['python_startup_s'] * 1000:.0f} ms. Top-level imports (cumulative ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in imp["top_ms"].items())
            + ".",
            "",
            "On rik-gw, as the benchmark user: "
            + ", ".join(f"`{k}` {v * 1000:.1f} ms" for k, v in prof["login_shell"].items())
            + " (median of 10; the kernel starts through the login shell).",
            "",
            "Profiles: " + ", ".join(f"{k}: `{v}`" for k, v in prof["files"].items()),
        ]
    if meta.get("plots"):
        lines += ["", "## Plots", "", *[f"![{name}]({path})" for name, path in meta["plots"].items()]]
    return "\n".join(lines) + "\n"
