"""Where the launcher's time goes: command start-up, ``-X importtime`` and pyinstrument over a launcher's cold start,
and what the user's login shell costs on the remote side."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import kernel as K
from .contenders import BY_KEY, ri_add, ri_env, rik_add, write_spec
from .session import Bench
from .util import BENCH_DIR, ROOT, log

PROFILES = BENCH_DIR / "results" / "profiles"
INTERFACES = (
    ("-i", "local"),
    ("-i", "ssh", "-x", "rik-gw"),
    ("-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front"),
    ("-i", "slurm", "-x", "rik-front", "-t", "rik-gw"),
    ("-i", "sge", "-x", "rik-front", "-t", "rik-gw"),
)


def cli_rounds(bench: Bench) -> dict[str, list[float]]:
    """Start-up of the management commands, each with five kernels of its own to show, shuffled per run."""
    bin_dir = Path(sys.executable).parent

    def env_for(data: Path) -> dict[str, str]:
        return {**os.environ, "JUPYTER_DATA_DIR": str(data), "JUPYTER_PATH": str(data)}

    rik_env = env_for(bench.root / "cli-rik")
    commands = {
        "rik --version": [str(bin_dir / "rik"), "--version"],
        "rik manage --show": [str(bin_dir / "rik"), "manage", "--show"],
        "jupyter kernelspec list": [str(bin_dir / "jupyter"), "kernelspec", "list"],
    }
    envs = dict.fromkeys(commands, rik_env)
    for args in INTERFACES:
        rik_add(bin_dir, *args, "--ssh-config", bench.ssh_config, "-n", "Cli", env=rik_env)
    if bench.ri_venv is not None:
        ri = {**env_for(bench.root / "cli-ri"), **ri_env(bench.root, bench.ssh_config, bench.ri_venv)}
        for args in INTERFACES:
            ri_add(bench.ri_venv, ri, *args, "-n", "Cli")
        commands["remote_ikernel manage --show"] = [str(bench.ri_venv / "bin" / "remote_ikernel"), "manage", "--show"]
        envs["remote_ikernel manage --show"] = ri
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(bench.args.cli_runs):
        random.Random(r).shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            proc = subprocess.run(commands[name], capture_output=True, env=envs[name], check=False)
            times[name].append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr.decode()}")
    log("command start-up: " + ", ".join(f"{k} {min(v) * 1000:.0f} ms" for k, v in times.items()))
    return times


def importtime(stderr: str) -> dict[str, Any]:
    """``-X importtime`` lines: the total, and the top-level packages by cumulative time."""
    top: dict[str, int] = {}
    total = 0
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not m:
            continue
        total += int(m.group(1))
        if not m.group(3):  # a top-level import (nested ones are indented)
            name = m.group(4).split(".")[0]
            top[name] = top.get(name, 0) + int(m.group(2))
    ranked = sorted(top.items(), key=lambda kv: -kv[1])
    return {"total_ms": total / 1000, "top_ms": {k: v / 1000 for k, v in ranked[:12]}}


def _launcher_run(bench: Bench, name: str, argv: list[str], spec: dict[str, Any], log_path: Path) -> float:
    """One cold start on rik-gw through a launcher run as ``argv`` + the kernelspec's arguments, one cell,
    shutdown: seconds to ready."""
    spec_name = write_spec(bench.root / "data", name, [*argv, *spec["argv"][1:]], interrupt_mode=spec["interrupt_mode"])
    env = {**os.environ, "RIK_RUNTIME_DIR": str(bench.runtime(name))}
    with open(log_path, "wb") as log_file:
        km, kc, took = K.start(spec_name, env, timeout=60, log_file=log_file)
        K.settle(kc)
        K.execute(kc, "pass")
        K.stop_nicely(km, kc)
    return took


def login_shell_cost(bench: Bench, runs: int = 10) -> dict[str, float]:
    """On rik-gw as the benchmark user: a login shell (``bash -l -c true``, as the kernel is started) against a
    plain ``sh -c true``; median seconds of each, same entry into the host for both."""
    out = {}
    for label, argv in (
        ("sh -c true", ["/bin/sh", "-c", "true"]),
        ("bash -l -c true", ["/bin/bash", "-l", "-c", "true"]),
    ):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            bench.cluster.run("rik-gw", argv, user=bench.user)
            times.append(time.perf_counter() - t0)
        out[label] = sorted(times)[len(times) // 2]
    return out


def profile(bench: Bench) -> dict[str, Any]:
    """pyinstrument over `rik manage --show` and over a launcher's cold start; -X importtime of a launcher."""
    PROFILES.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    out: dict[str, Any] = {"files": {}}
    env = {**os.environ, "JUPYTER_DATA_DIR": str(bench.root / "cli-rik"), "JUPYTER_PATH": str(bench.root / "cli-rik")}
    target = PROFILES / "rik-manage-show.txt"
    subprocess.run(
        [py, "-m", "pyinstrument", "-o", str(target), "-m", "rik", "manage", "--show"],
        env=env,
        check=True,
        capture_output=True,
    )
    out["files"]["rik manage --show"] = str(target.relative_to(ROOT))
    spec = json.loads((bench.root / "data" / "kernels" / BY_KEY["rik-gw"].kernel / "kernel.json").read_text())
    target = PROFILES / "launcher-ssh-cold.txt"
    _launcher_run(
        bench, "bench_profile", [py, "-m", "pyinstrument", "-o", str(target)], spec, bench.root / "logs" / "profile.log"
    )
    out["files"]["launcher (rik ssh → rik-gw, cold start, one cell, shutdown)"] = str(target.relative_to(ROOT))
    log_path = bench.root / "logs" / "importtime.log"
    _launcher_run(bench, "bench_importtime", [py, "-X", "importtime"], spec, log_path)
    text = log_path.read_text(errors="replace")
    (PROFILES / "launcher-importtime.txt").write_text(
        "\n".join(line for line in text.splitlines() if line.startswith("import time:")) + "\n"
    )
    out["files"]["launcher -X importtime"] = str((PROFILES / "launcher-importtime.txt").relative_to(ROOT))
    out["importtime"] = importtime(text)
    t0 = time.perf_counter()
    subprocess.run([py, "-c", "pass"], check=True)
    out["python_startup_s"] = time.perf_counter() - t0
    out["login_shell"] = login_shell_cost(bench)
    log(f"profiles written to {PROFILES}; launcher imports {out['importtime']['total_ms']:.0f} ms")
    return out
