"""`rik manage` with rik-slurm: walltimes read as SLURM reads them, memory sizes srun accepts, refusals, and the
recreate command of a SLURM kernel."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from manage_cases import assert_refused, kernels, snapshot

KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


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
def test_walltime_is_read_as_slurm_reads_it_and_printed(rik, jupyter_home: Path, given: str, stored: str) -> None:
    out = rik("manage", "--add", "-i", "slurm", "-n", "W", "--walltime", given, check=True).out
    assert out.splitlines()[1:] == [f"  walltime {stored}"]
    assert config_of(jupyter_home, "rik_slurm_w")["resources"] == {"walltime": stored}
    dry = rik("manage", "--add", "-i", "slurm", "-n", "W", "--walltime", given, "--dry-run", "--replace", check=True)
    assert dry.out.startswith(f"Would replace kernel 'rik_slurm_w' (SLURM W ({stored})) in ")
    assert json.loads(dry.out.partition("\n")[2])["display_name"] == f"SLURM W ({stored})"


@pytest.mark.parametrize(("given", "stored"), [("0.5G", "512M"), ("8GiB", "8G"), ("2048M", "2G"), ("1.5T", "1536G")])
def test_memory_is_normalised(rik, jupyter_home: Path, given: str, stored: str) -> None:
    out = rik("manage", "--add", "-i", "slurm", "-n", "M", "--memory", given, check=True).out
    assert out.splitlines()[1:] == [f"  memory {stored}"]
    assert config_of(jupyter_home, "rik_slurm_m")["resources"] == {"memory": stored}


REFUSALS = [
    (["--walltime", "soon"],
     "bad --walltime 'soon': use minutes, MM:SS, H:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (as SLURM reads them)"),
    (["--walltime", "0"], "bad --walltime '0': a time limit must be longer than 0"),
    (["--memory", "0.3M"], "bad --memory '0.3M': that is 307.2K, not a whole number of K"),
    (["--memory", "lots"], "bad --memory 'lots': use a whole number with K, M, G or T, e.g. 4G or 512M"),
    (["--queue", "gpu debug"], "bad --queue 'gpu debug': one word, without spaces"),
    (["--account", "-x"], "bad --account '-x': one word, without spaces"),
    (["--pe", "smp", "--cpus", "2"],
     "interface 'slurm' does not take --pe (it takes: --account, --cpus, --gpus, --memory, --queue, --walltime; "
     "--remote-launch-args passes anything else to the scheduler)"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_bad_options_are_refused_in_one_line(rik, jupyter_home: Path, args: list[str], message: str) -> None:
    assert_refused(rik, jupyter_home, ["manage", "--add", "-i", "slurm", *args], 2, message)


def test_a_slurm_kernel_is_made_again_by_its_recreate_command(rik, jupyter_home: Path) -> None:
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
    rik("manage", "--delete", name.upper(), check=True)  # any case works
    rik(*shlex.split(recreate)[1:], check=True)
    assert rik("manage", "--show", name, check=True).out == out
    assert snapshot(kernels(jupyter_home) / name).keys() == before.keys()
    assert config_of(jupyter_home, name)["resources"] == {
        "cpus": 4, "memory": "4G", "walltime": "1:00:00", "gpus": 1, "queue": "debug", "account": "proj"
    }
