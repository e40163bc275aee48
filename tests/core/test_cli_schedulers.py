"""`rik manage` with the first-party scheduler plugins: walltimes as each scheduler reads them, memory sizes,
remote_ikernel's several-value --tunnel-hosts, and the recreate command of a scheduler kernel. These need the
plugins installed (the `tests` session installs every distribution; `tests-core` installs rik-core alone)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

pytest.importorskip("rik_slurm", reason="needs rik-slurm installed")
pytest.importorskip("rik_ssh", reason="needs rik-ssh installed")
pytest.importorskip("rik_sge", reason="needs rik-sge installed")

KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


def kernels(home: Path) -> Path:
    return home / "data" / "kernels"


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``path`` (folders too) with its mode and content."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): (p.stat().st_mode, b"" if p.is_dir() else p.read_bytes())
        for p in sorted(path.rglob("*"))
    }


def snapshot_case(rik, jupyter_home: Path, args: list[str], code: int, message: str) -> None:
    rik("manage", "--add", "-n", "Existing", check=True)
    before = snapshot(kernels(jupyter_home))
    result = rik(*args)
    assert (result.code, result.err, result.out) == (code, f"rik: error: {message}\n", ""), result
    assert snapshot(kernels(jupyter_home)) == before


def config_of(home: Path, name: str) -> dict:
    return json.loads((kernels(home) / name / "kernel.json").read_text())["metadata"]["rik"]["config"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("30:00", "0:30:00"),  # SLURM reads MM:SS (it used to become 30:00:00, thirty hours)
        ("2-12", "60:00:00"),  # D-HH: two days and twelve hours
        ("2-12:30", "60:30:00"),
        ("90", "1:30:00"),  # minutes
        ("1:00:00", "1:00:00"),
    ],
)
def test_slurm_walltime_is_read_as_slurm_reads_it_and_printed(rik, jupyter_home: Path, given: str, stored: str) -> None:
    out = rik("manage", "--add", "-i", "slurm", "-n", "W", "--walltime", given, check=True).out
    assert out.splitlines()[1:] == [f"  walltime {stored}"]
    assert config_of(jupyter_home, "rik_slurm_w")["resources"] == {"walltime": stored}
    dry = rik("manage", "--add", "-i", "slurm", "-n", "W", "--walltime", given, "--dry-run", "--replace", check=True)
    spec = json.loads(dry.out.partition("\n")[2])
    assert spec["display_name"] == f"SLURM W ({stored})"


@pytest.mark.parametrize(("given", "stored"), [("0.5G", "512M"), ("8GiB", "8G"), ("2048M", "2G"), ("1.5T", "1536G")])
def test_memory_is_normalised(rik, jupyter_home: Path, given: str, stored: str) -> None:
    out = rik("manage", "--add", "-i", "slurm", "-n", "M", "--memory", given, check=True).out
    assert out.splitlines()[1:] == [f"  memory {stored}"]
    assert config_of(jupyter_home, "rik_slurm_m")["resources"] == {"memory": stored}


SCHEDULER_REFUSALS = [
    (["manage", "--add", "-i", "sge", "--walltime", "30:00"], "bad --walltime '30:00': use H:MM:SS, e.g. 0:30:00 or 48:00:00"),
    (["manage", "--add", "-i", "slurm", "--walltime", "soon"],
     "bad --walltime 'soon': use minutes, MM:SS, H:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (as SLURM reads them)"),
    (["manage", "--add", "-i", "slurm", "--walltime", "0"], "bad --walltime '0': a time limit must be longer than 0"),
    (["manage", "--add", "-i", "slurm", "--memory", "0.3M"], "bad --memory '0.3M': that is 307.2K, not a whole number of K"),
    (["manage", "--add", "-i", "slurm", "--memory", "lots"],
     "bad --memory 'lots': use a whole number with K, M, G or T, e.g. 4G or 512M"),
    (["manage", "--add", "-i", "slurm", "--queue", "gpu debug"], "bad --queue 'gpu debug': one word, without spaces"),
    (["manage", "--add", "-i", "slurm", "--account", "-x"], "bad --account '-x': one word, without spaces"),
    (["manage", "--add", "-i", "ssh"], "interface 'ssh' needs --host (host, user@host or host:port)"),
    (["manage", "--add", "-i", "ssh", "-x", "h:99999"], "bad host 'h:99999': the port after ':' must be a number from 1 to 65535"),
    (["manage", "--add", "-i", "ssh", "-x", "h", "--cpus", "2"],
     "interface 'ssh' does not take --cpus (it takes: none; --remote-launch-args passes anything else to the scheduler)"),
    (["manage", "--add", "-i", "ssh", "-x", "h", "--transport", "direct"],
     "--transport direct runs the kernel's job on this machine: drop --host and --tunnel-hosts, or use --transport auto"),
]


@pytest.mark.parametrize(("args", "message"), SCHEDULER_REFUSALS, ids=[" ".join(a)[14:60] for a, _ in SCHEDULER_REFUSALS])
def test_scheduler_options_are_refused_in_one_line(rik, jupyter_home: Path, args: list[str], message: str) -> None:
    snapshot_case(rik, jupyter_home, args, 2, message)


def test_tunnel_hosts_take_several_values_like_remote_ikernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "ssh", "-x", "me@c1:2222", "--tunnel-hosts", "gw", "front:2222", "-n", "T", check=True)
    name = "rik_ssh_me_c1_2222_t_via_gw_front_2222"
    spec = json.loads((kernels(jupyter_home) / name / "kernel.json").read_text())
    config = json.loads(spec["argv"][4])
    assert config["tunnel_hosts"] == ["gw", "front:2222"] and config["host"] == "me@c1:2222"
    assert spec["display_name"] == "SSH T on me@c1:2222 via gw front:2222"
    assert config["kernel_cmd"] == KCMD  # a remote kernel: the remote side's python3


def test_a_scheduler_kernel_is_made_again_by_its_recreate_command(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "slurm", "-x", "login", "--cpus", "4", "--walltime", "1:00:00", "--queue", "debug",
        "-k", KCMD, "-n", "P", "--remote-precmd", "module load python", "-t", "gw", "front", "--memory", "4G",
        "--account", "proj", "--gpus", "1", "--job-name", "nb", "--launch-cmd", "/opt/slurm/bin/srun",
        "--remote-launch-args", "--constraint=avx2", "--workdir", "~/work", "--queue-timeout", "600", "-v",
        check=True)
    out = rik("manage", "--show", check=True).out
    name = "rik_slurm_login_p_srun_4_via_gw_front"
    assert out.startswith(f"{name}: SLURM P on login (debug, srun, 4 CPUs, 1 GPU, 4G, 1:00:00) via gw front\n")
    recreate = next(line for line in out.splitlines() if "recreate:" in line).split("recreate: ", 1)[1]
    before = snapshot(kernels(jupyter_home) / name)
    rik("manage", "--delete", name.upper(), check=True)
    rik(*shlex.split(recreate)[1:], check=True)
    assert rik("manage", "--show", name, check=True).out == out
    assert snapshot(kernels(jupyter_home) / name).keys() == before.keys()
    assert config_of(jupyter_home, name)["resources"] == {
        "cpus": 4, "memory": "4G", "walltime": "1:00:00", "gpus": 1, "queue": "debug", "account": "proj"
    }
