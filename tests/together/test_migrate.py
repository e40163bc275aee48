"""``rik manage --import``: kernelspecs written by the real remote_ikernel 0.4.6 (from PyPI, in a throwaway virtual
environment) become rik kernels with the same names and settings.

In tests/together: remote_ikernel's kernels use every interface, so these need every first-party plugin installed
(the `tests` session); `tests-core` runs tests/core with rik-core alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernels import tree
from rik.config import KernelConfig

PY = "/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"


@pytest.fixture(scope="session")
def remote_ikernel() -> Iterator[Path]:
    """The python of a throwaway venv with remote_ikernel 0.4.6 from PyPI.

    Only remote_ikernel's ``manage`` runs here, and it needs jupyter_client alone: remote_ikernel is installed
    without its dependencies (notebook, pexpect, tornado) to keep this quick. Its ``manage`` imports and runs
    on Python 3.11 as published: no fix is applied.
    """
    root = Path(tempfile.mkdtemp(prefix="rik-ri-"))
    venv = root / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for args in (["jupyter_client"], ["--no-deps", "remote_ikernel==0.4.6"]):
            done = subprocess.run(pip + args, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                message = f"cannot install {' '.join(args)} from the package index: {done.stderr.strip()[-300:]}"
                if os.environ.get("CI") == "true":
                    pytest.fail(message, pytrace=False)
                pytest.skip(message)
        yield venv / "bin" / "python"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ri_manage(remote_ikernel: Path, jupyter_home: Path):
    """Run remote_ikernel's own ``manage`` in the isolated Jupyter; returns the kernel name it printed."""

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(remote_ikernel), "-m", "remote_ikernel", "manage", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split("['", 1)[1].split("']", 1)[0]

    return run


def kernel_json(jupyter_home: Path, name: str) -> dict:
    return json.loads((jupyter_home / "data" / "kernels" / name / "kernel.json").read_text())


def config_of(jupyter_home: Path, name: str) -> KernelConfig:
    return KernelConfig.from_json(kernel_json(jupyter_home, name)["metadata"]["rik"]["config"])


def add_three(ri_manage) -> tuple[str, str, str]:
    ssh = ri_manage(
        "--add", "--interface", "ssh", "--host", "rik-front", "--name", "Py SSH", "-k", PY,
        "--tunnel-hosts", "rik-gw", "--remote-precmd", "module load python", "--workdir", "/scratch/me",
    )  # fmt: skip
    slurm = ri_manage(
        "--add", "--interface", "slurm", "--name", "Py", "--cpus", "4", "--tunnel-hosts", "rik-gw", "rik-front",
        "--remote-launch-args", "--time 1:00:00", "-k", PY, "--verbose",
    )  # fmt: skip
    sge = ri_manage(
        "--add", "--interface", "sge", "--name", "Py", "--pe", "mpi", "--cpus", "2", "--host", "rik-front",
        "--launch-cmd", "qrsh", "-k", PY, "--language", "python",
    )  # fmt: skip
    return ssh, slurm, sge


def test_remote_ikernels_become_rik_kernels_with_the_same_names_and_settings(rik, ri_manage, jupyter_home: Path) -> None:
    ssh, slurm, sge = add_three(ri_manage)
    assert (ssh, slurm, sge) == ("rik_ssh_rik_front_pyssh_via_rik_gw", "rik_slurm_py_4_via_rik_gw_rik_front", "rik_sge_py_qrsh_mpi_2")
    displays = {n: kernel_json(jupyter_home, n)["display_name"] for n in (ssh, slurm, sge)}
    shown = rik("manage", "--show", ssh, check=True)
    assert "made by remote_ikernel: convert it with `rik manage --import" in shown.out
    checked = rik("doctor", ssh)
    assert checked.code == 1 and "made by remote_ikernel" in checked.out and f"rik manage --import {ssh}" in checked.out

    result = rik("manage", "--import", check=True)
    for name in (ssh, slurm, sge):
        assert f"Converted '{name}' in " in result.out, result.out
    assert "rik doctor" in result.out  # host keys are checked now: say how to test the hosts

    c = config_of(jupyter_home, ssh)
    assert (c.interface, c.host, c.tunnel_hosts, c.name) == ("ssh", "rik-front", ("rik-gw",), "Py SSH")
    assert (c.kernel_cmd, c.precmd, c.workdir) == (PY, "module load python", "/scratch/me")
    # remote_ikernel ran srun on the last tunnel host: in rik that is the submit host, behind the other hops.
    c = config_of(jupyter_home, slurm)
    assert (c.interface, c.host, c.tunnel_hosts, c.resources.cpus) == ("slurm", "rik-front", ("rik-gw",), 4)
    assert (c.launch_args, c.verbose, c.name) == ("--time 1:00:00", True, "Py")
    # remote_ikernel dropped --host for schedulers (qrsh ran on this machine): so does the converted kernel.
    c = config_of(jupyter_home, sge)
    assert (c.interface, c.host, c.launch_cmd, c.resources.pe, c.resources.cpus) == ("sge", None, "qrsh", "mpi", 2)
    assert c.language == "python"
    sge_line = next(line for line in result.out.splitlines() if sge in line)
    assert "remote_ikernel ignored --host rik-front for interface sge" in sge_line
    for name in (ssh, slurm, sge):
        spec = kernel_json(jupyter_home, name)
        assert spec["argv"][1:4] == ["-m", "rik", "--kernel-config"], spec["argv"]
        assert spec["argv"][-1] == "{connection_file}"
        assert "remote_ikernel" not in json.dumps(spec["argv"])
        assert spec["display_name"] == displays[name]  # what users know their kernels by
        shown = rik("manage", "--show", name, check=True)
        assert "recreate: rik manage --add" in shown.out and "remote_ikernel" not in shown.out, shown.out

    again = rik("manage", "--import", check=True)
    assert "No remote_ikernel kernels found" in again.out


def test_grid_engine_cpus_without_pe_keep_remote_ikernels_default_pe(rik, ri_manage, jupyter_home: Path) -> None:
    name = ri_manage("--add", "--interface", "sge_qrsh", "--name", "Q", "--cpus", "3", "-k", PY)
    rik("manage", "--import", name, check=True)
    c = config_of(jupyter_home, name)
    assert (c.interface, c.resources.pe, c.resources.cpus) == ("sge_qrsh", "smp", 3)


def test_dry_run_says_what_it_would_do_and_changes_nothing(rik, ri_manage, jupyter_home: Path) -> None:
    _ssh, slurm, _sge = add_three(ri_manage)
    before = tree(jupyter_home / "data")
    result = rik("manage", "--import", "--dry-run", check=True)
    assert tree(jupyter_home / "data") == before
    lines = [line for line in result.out.splitlines() if line.startswith("Would convert")]
    assert len(lines) == 3, result.out
    slurm_line = next(line for line in lines if slurm in line)
    assert "--interface=slurm" in slurm_line and "--cpus=4" in slurm_line
    assert "--host=rik-front" in slurm_line and "--tunnel-hosts rik-gw" in slurm_line, slurm_line


def test_only_the_named_kernels_are_converted(rik, ri_manage, jupyter_home: Path) -> None:
    ssh, slurm, sge = add_three(ri_manage)
    rik("manage", "--import", slurm.upper(), check=True)  # any case, like every rik command
    assert config_of(jupyter_home, slurm).interface == "slurm"
    assert "metadata" not in kernel_json(jupyter_home, ssh)
    assert "metadata" not in kernel_json(jupyter_home, sge)


def test_a_kernel_that_cannot_be_converted_is_reported_and_left_alone(rik, ri_manage, jupyter_home: Path, monkeypatch) -> None:
    ssh, slurm, sge = add_three(ri_manage)
    pbs = ri_manage("--add", "--interface", "pbs", "--name", "Batch", "-k", PY)
    broken = jupyter_home / "data" / "kernels" / "rik_broken"
    broken.mkdir()
    spec = kernel_json(jupyter_home, ssh)
    spec["argv"] = [a if a != "ssh" else "condor" for a in spec["argv"]]  # an interface remote_ikernel never had
    (broken / "kernel.json").write_text(json.dumps(spec))
    untouched = {n: (jupyter_home / "data" / "kernels" / n / "kernel.json").read_bytes() for n in (pbs, "rik_broken")}
    monkeypatch.setenv("RIK_DISABLE_PLUGINS", "pbs")  # as if rik-pbs were not installed

    result = rik("manage", "--import", pbs, slurm, "rik_broken", "rik_nosuch")
    assert result.code == 1, result
    assert f"Cannot convert '{pbs}'" in result.err and "RIK_DISABLE_PLUGINS" in result.err, result.err
    assert "Cannot convert 'rik_broken'" in result.err and "unknown remote_ikernel interface 'condor'" in result.err
    assert "Cannot convert 'rik_nosuch': no such kernel" in result.err
    assert "Traceback" not in result.err
    assert f"Converted '{slurm}'" in result.out
    for name, content in untouched.items():
        assert (jupyter_home / "data" / "kernels" / name / "kernel.json").read_bytes() == content
    assert sorted(p.name for p in (jupyter_home / "data" / "kernels").iterdir()) == sorted(
        [ssh, slurm, sge, pbs, "rik_broken"]
    )  # nothing half-written, no staging directory left
    assert config_of(jupyter_home, slurm).resources.cpus == 4
