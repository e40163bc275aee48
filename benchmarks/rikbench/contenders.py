"""The contenders: rik's kernels, the floors each is measured against, and remote_ikernel 0.4.6; their kernelspecs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .util import BENCH_DIR, KERNEL_CMD, REMOTE_PY, log

RI_VERSION = "0.4.6"
CHAIN = ("rik-gw", "rik-front", "rik-c1")
ALL_HOSTS = ("rik-gw", "rik-front", "rik-c1", "rik-c2")


@dataclass
class Contender:
    key: str
    label: str
    kind: str  # floor | rik | ri
    hosts: tuple[str, ...] = ()  # test hosts its processes live on
    scheduler: str | None = None  # slurm | sge: the queue is checked after shutdown
    extra: tuple[str, ...] = ()  # more kernels after cold and warm: "restart", "reconnect" (ssh processes killed)
    warm: bool = True  # a second start (remote_ikernel's costs a shutdown that waits out --gone-timeout)
    kernel: str = ""  # kernelspec name, filled in by make_specs
    env: dict[str, str] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return bool(self.hosts)


BOTH = ("restart", "reconnect")
CONTENDERS = [
    Contender("local", "local ipykernel (floor)", "floor", extra=("restart",)),
    Contender("rik-local", "rik local", "rik"),
    Contender("raw-gw", "raw ssh → rik-gw (floor)", "floor", ("rik-gw",)),
    Contender("rik-gw", "rik ssh → rik-gw", "rik", ("rik-gw",), extra=BOTH),
    Contender("ri-gw", "remote_ikernel 0.4.6 ssh → rik-gw", "ri", ("rik-gw",), warm=False),
    Contender("raw-chain", "raw ssh → gw → front → c1 (floor)", "floor", CHAIN),
    Contender("rik-chain", "rik ssh → gw → front → c1", "rik", CHAIN, extra=("reconnect",)),
    Contender("hand-slurm", "srun by hand via gw → front (floor)", "floor", ALL_HOSTS, "slurm"),
    Contender("rik-slurm", "rik slurm (srun via gw → front)", "rik", ALL_HOSTS, "slurm", extra=BOTH),
    Contender("hand-sge", "qrsh by hand via gw → front (floor)", "floor", ALL_HOSTS, "sge"),
    Contender("rik-sge", "rik sge (qlogin via gw → front)", "rik", ALL_HOSTS, "sge", extra=BOTH),
    Contender("rik-qrsh", "rik sge_qrsh (qrsh via gw → front)", "rik", ALL_HOSTS, "sge"),
]
BY_KEY = {c.key: c for c in CONTENDERS}
# Not kernels: a job started by hand and cancelled (scancel / qdel) until it leaves the queue, the floor of a
# scheduler kernel's shutdown. Interleaved with the contenders.
CANCEL_PROBES = {"cancel-slurm": "slurm", "cancel-sge": "sge"}


def write_spec(data: Path, name: str, argv: list[str], **extra: Any) -> str:
    folder = data / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python", **extra}))
    return name


def rik(bin_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(bin_dir / "rik"), *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=60
    )
    if result.returncode != 0:
        raise SystemExit(f"rik {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def rik_add(bin_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`rik manage --add`; the new kernel's name."""
    return rik(bin_dir, "manage", "--add", "-k", KERNEL_CMD, *args, env=env).split("'")[1]


def install_ri() -> Path:
    """remote_ikernel 0.4.6 from PyPI in a virtual environment of its own (kept between runs)."""
    cache = Path(os.environ.get("RIK_BENCH_CACHE", Path.home() / ".cache" / "rik-bench"))
    venv = cache / f"remote_ikernel-{RI_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    if not (venv / "bin" / "remote_ikernel").exists():
        log(f"installing remote_ikernel {RI_VERSION} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"remote_ikernel=={RI_VERSION}"], check=True)
    return venv


def ri_env(root: Path, ssh_config: str, venv: Path) -> dict[str, str]:
    """remote_ikernel runs plain `ssh HOST`: a wrapper first on PATH gives that ssh the cluster's config (OpenSSH
    reads ~/.ssh/config from the passwd entry, not $HOME, so a HOME of our own would not reach it)."""
    wrapper_dir = root / "ri-bin"
    if not wrapper_dir.exists():
        wrapper_dir.mkdir()
        wrapper = wrapper_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {ssh_config} "$@"\n')
        wrapper.chmod(0o755)
    return {"PATH": f"{wrapper_dir}:{venv / 'bin'}:{os.environ['PATH']}"}


def ri_add(venv: Path, env: dict[str, str], *args: str) -> str:
    argv = [str(venv / "bin" / "remote_ikernel"), "manage", "--add", *args, "-k", KERNEL_CMD]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout.split("'")[1]


def make_specs(root: Path, ssh_config: str, ri_venv: Path | None, ri_workdir: Path) -> None:
    """Every contender's kernelspec, in the run's own JUPYTER_DATA_DIR."""
    data, bin_dir = root / "data", Path(sys.executable).parent
    c = BY_KEY
    raw = [sys.executable, str(BENCH_DIR / "rawssh.py"), "--ssh-config", ssh_config]
    hand = [sys.executable, str(BENCH_DIR / "handjob.py"), "--ssh-config", ssh_config, "--submit", "rik-front"]
    c["local"].kernel = write_spec(
        data, "bench_local", [REMOTE_PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    )
    msg = {"interrupt_mode": "message"}
    c["raw-gw"].kernel = write_spec(data, "bench_raw_gw", [*raw, "--host", "rik-gw", "{connection_file}"], **msg)
    c["raw-chain"].kernel = write_spec(
        data, "bench_raw_chain", [*raw, "--host", "rik-c1", "--jump", "rik-gw,rik-front", "{connection_file}"], **msg
    )
    for sched in ("slurm", "sge"):
        argv = [*hand, "--jump", "rik-gw", "--scheduler", sched, "{connection_file}"]
        c[f"hand-{sched}"].kernel = write_spec(data, f"bench_hand_{sched}", argv, **msg)
    c["rik-local"].kernel = rik_add(bin_dir, "-i", "local", "-n", "Bench")
    common = ("--ssh-config", ssh_config, "-n", "Bench")
    c["rik-gw"].kernel = rik_add(bin_dir, "-i", "ssh", "-x", "rik-gw", *common)
    c["rik-chain"].kernel = rik_add(bin_dir, "-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front", *common)
    c["rik-slurm"].kernel = rik_add(bin_dir, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", *common)
    c["rik-sge"].kernel = rik_add(bin_dir, "-i", "sge", "-x", "rik-front", "-t", "rik-gw", *common)
    c["rik-qrsh"].kernel = rik_add(bin_dir, "-i", "sge_qrsh", "-x", "rik-front", "-t", "rik-gw", *common)
    if ri_venv is not None:
        env = ri_env(root, ssh_config, ri_venv)
        c["ri-gw"].env = env
        c["ri-gw"].kernel = ri_add(
            ri_venv, {**os.environ, **env}, "-i", "ssh", "-x", "rik-gw", "-n", "RI", "--workdir", str(ri_workdir)
        )
    for x in CONTENDERS:
        log(f"  {x.key:10} kernelspec {x.kernel or '(not installed)'}")
