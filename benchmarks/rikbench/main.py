"""The command line: which parts run, how many rounds, where the results go."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import contenders as C
from . import kernel as K
from .hosts import Cluster, ClusterDown, alive, is_ssh, kill, proc_table
from .runs import kernel_rounds
from .session import Bench
from .util import BENCH_DIR, REMOTE_PY, log

PARTS = ("kernels", "throughput", "scaling", "logins", "cli", "profile", "plots")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description="rik's benchmarks (benchmarks/README.md)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, fewer cells and samples, scaling 1 and 4")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--cells", type=int, help="trivial cells per round-trip sample")
    parser.add_argument("--mib", type=int, help="MiB of output per throughput sample")
    parser.add_argument("--mib-samples", type=int, help="throughput samples per kernel (the best counts)")
    parser.add_argument("--scale", help="comma-separated kernel counts started at once (default 1,4,16)")
    parser.add_argument(
        "--only", help="comma-separated contender keys: " + ",".join(C.BY_KEY) + "," + ",".join(C.CANCEL_PROBES)
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: " + ",".join(PARTS))
    parser.add_argument("--no-life", action="store_true", help="no restart and reconnect kernels")
    parser.add_argument("--user", default="rik2", help="test user the remote kernels run as (default: %(default)s)")
    parser.add_argument("--start-timeout", type=float, default=90)
    parser.add_argument("--gone-timeout", type=float, default=5)
    parser.add_argument("--restart-timeout", type=float, default=15)
    parser.add_argument("--reconnect-timeout", type=float, default=15)
    parser.add_argument("--out", default=str(BENCH_DIR / "results"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory with every launcher's log")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.cells = args.cells or 50
    args.mib = args.mib or (2 if args.quick else 4)
    args.mib_samples = args.mib_samples or (2 if args.quick else 3)
    args.scale = [int(n) for n in (args.scale or ("1,4" if args.quick else "1,4,16")).split(",")]
    args.tput_blocks, args.tput_abba, args.tput_mib = (3, 1, 4) if args.quick else (60, 2, 8)
    args.scale_rounds = 1
    args.cli_runs = 8 if args.quick else 20
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


def first_line(argv: list[str], stderr: bool = False) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (p.stderr if stderr else p.stdout).strip() or p.stdout.strip() or p.stderr.strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def load() -> str:
    """The machine's load averages and what else ran: other engineers' tests share the 2 cores."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def metadata(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ri = "not installed"
    if bench.ri_venv is not None:
        ri = first_line(
            [str(bench.ri_venv / "bin" / "python"), "-c", "import remote_ikernel; print(remote_ikernel.__version__)"]
        )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}",
        "rounds": args.rounds,
        "cells": args.cells,
        "mib": args.mib,
        "mib_samples": args.mib_samples,
        "gone_timeout": args.gone_timeout,
        "quick": args.quick,
        "versions": {
            "rik": version("rik-core")
            + f" (commit {os.environ.get('RIK_BENCH_COMMIT') or first_line(['git', '-C', str(BENCH_DIR), 'rev-parse', '--short', 'HEAD'])})",
            "Python (harness, launchers)": platform.python_version(),
            "jupyter_client": version("jupyter_client"),
            "ipykernel (kernels, Debian)": first_line(
                [REMOTE_PY, "-c", "import ipykernel; print(ipykernel.__version__)"]
            ),
            "remote_ikernel": ri,
            "OpenSSH": first_line(["ssh", "-V"], stderr=True).split(",")[0],
            "SLURM": first_line(["srun", "--version"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        cluster = Cluster()
    except ClusterDown as exc:
        print(f"bench: the test cluster is not up ({exc}): run `sudo tests/cluster/up`", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, other users' /proc)", file=sys.stderr)
        return 1
    bench = Bench(args, cluster)
    t_start = time.monotonic()
    payload: dict[str, Any] = {"load": {"before": load()}}
    try:
        log(f"scratch directory {bench.root}; benchmark user {bench.user}; {payload['load']['before']}")
        only = set(args.only.split(",")) if args.only else None
        if only is None or "ri-gw" in only:
            bench.ri_venv = C.install_ri()
        C.make_specs(bench.root, bench.ssh_config, bench.ri_venv, bench.ri_workdir)
        contenders = [c for c in C.CONTENDERS if (only is None or c.key in only) and c.kernel]
        probes = [p for p in C.CANCEL_PROBES if only is None or p in only]
        if "kernels" not in args.skip:
            payload["samples"] = kernel_rounds(bench, contenders, probes)
        if "throughput" not in args.skip:
            from .runs import throughput_pairs

            payload["throughput"] = throughput_pairs(bench)
        if "scaling" not in args.skip:
            from .runs import scaling_rounds

            payload["scaling"] = scaling_rounds(bench)
        if "logins" not in args.skip:
            from .logins import logins

            payload["logins"] = logins(bench)
        if "cli" not in args.skip:
            from .profiling import cli_rounds

            payload["cli"] = cli_rounds(bench)
        if "profile" not in args.skip:
            from .profiling import profile

            payload["profiles"] = profile(bench)
        payload["load"]["after"] = load()
        payload["meta"] = metadata(args, bench)
        payload["meta"]["wall_time_s"] = round(time.monotonic() - t_start, 1)
        write(args, payload)
    finally:
        end_everything(bench)
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
    return 0


def end_everything(bench: Bench) -> None:
    """Launchers that outlived their kernel, then every ssh process of the run (masters kept for ControlPersist
    included: their paths are in the run's scratch directory). Only this run's processes, by pid."""
    kill((p for p in K.LAUNCHERS if alive(p)), 15)
    deadline = time.monotonic() + 3
    while any(alive(p) for p in K.LAUNCHERS) and time.monotonic() < deadline:
        time.sleep(0.1)
    kill(p for p in K.LAUNCHERS if alive(p))
    kill((pid for pid, (_, cmd) in proc_table().items() if is_ssh(cmd) and str(bench.root) in cmd), 15)


def write(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    from .report import markdown, summarize

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload["summary"] = summarize(payload)
    if "plots" not in args.skip:
        try:
            from .plots import plots

            payload["meta"]["plots"] = plots(payload, out)
        except ImportError as exc:
            log(f"no plots: {exc}")
    text = markdown(payload)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    for name in (f"{stamp}.json", "latest.json"):
        (out / name).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    for name in (f"{stamp}.md", "latest.md"):
        (out / name).write_text(text)
    print(text)
    log(f"done in {payload['meta']['wall_time_s']:.0f} s; results in {out}")
