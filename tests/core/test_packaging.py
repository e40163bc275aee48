"""The built distributions, not the source folders: the six wheels installed into a fresh virtual environment list
their plugins and run a kernel.

The wheels are built here with hatchling (the build backend every distribution names), so this runs wherever the
tests run, CI's `tests` session included; the fresh environment gets its dependencies (jupyter_client, pluggy,
click...) from the package index as a user's would. `nox -s build` builds the same wheels and sdists into dist/
and checks them with `twine check --strict`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTS = ["rik-core", "rik-ssh", "rik-slurm", "rik-sge", "rik-pbs", "rik-lsf"]


def run(*argv: str | Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("wheels")
    for dist in DISTS:
        run(sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", out, cwd=ROOT / dist)
    built = sorted(out.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == sorted(d.replace("-", "_") for d in DISTS)
    return built


def test_every_wheel_carries_its_licence_readme_and_metadata(wheels: list[Path]) -> None:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), wheel.name
        assert "License-Expression: BSD-3-Clause" in metadata and "Author: rik developers" in metadata
        assert "Classifier: Framework :: Jupyter" in metadata
        assert "Description-Content-Type: text/markdown" in metadata and "## Example" in metadata, wheel.name
        assert "../README.md" not in metadata  # a relative link breaks on an index page
        assert any(n.endswith("/py.typed") for n in names), wheel.name


def test_the_built_wheels_in_a_fresh_environment_list_the_plugins_and_run_a_kernel(
    wheels: list[Path], tmp_path: Path, jupyter_home: Path
) -> None:
    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", env)
    run(env / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wheels, timeout=600)
    where = run(env / "bin" / "python", "-c", "import rik, rik_slurm; print(rik.__file__); print(rik_slurm.__file__)")
    assert all(line.startswith(str(env)) for line in where.stdout.splitlines()), where.stdout  # not the checkout

    listed = json.loads(run(env / "bin" / "rik", "plugins", "--json").stdout)
    assert {(p["name"], p["distribution"], p["status"]) for p in listed} == {
        ("local", "rik-core", "ok"),
        *((d.removeprefix("rik-"), d, "ok") for d in DISTS[1:]),
    }

    # rik-core alone has no ipykernel: the default local kernel cannot start, and --add says so instead of writing it.
    bare = subprocess.run([env / "bin" / "rik", "manage", "--add", "-n", "Bare"], capture_output=True, text=True, timeout=60)
    python = env / "bin" / "python"
    assert (bare.returncode, bare.stdout) == (2, ""), bare
    assert bare.stderr == (
        f"rik: error: {python} has no module 'ipykernel_launcher', so this kernel could not start: install ipykernel "
        f"there ({python} -m pip install ipykernel), or give --kernel-cmd a Python that has it\n"
    )
    assert not (jupyter_home / "data" / "kernels" / "rik_local_bare").exists()

    # The demo: a local kernel (this test environment's Python has ipykernel), one cell through jupyter_client.
    kernel_cmd = f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}"
    run(env / "bin" / "rik", "manage", "--add", "-i", "local", "-n", "Demo", "-k", kernel_cmd)
    spec = json.loads((jupyter_home / "data" / "kernels" / "rik_local_demo" / "kernel.json").read_text())
    assert spec["argv"][0] == str(env / "bin" / "python")  # the launcher is the installed wheel's
    demo = run(env / "bin" / "python", ROOT / "docs" / "demo.py", "rik_local_demo", timeout=180, env=dict(os.environ))
    assert "cell status ok:" in demo.stdout and "6 * 7 = 42 from " in demo.stdout, demo.stdout
