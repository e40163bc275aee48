"""rik's one runner. `nox -s tests` is what CI and the README run; `nox -s demo` is the README's "try it"."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PLUGINS = ["ssh", "slurm", "sge", "pbs", "lsf"]
DISTS = ["./rik-core"] + [f"./rik-{p}" for p in PLUGINS]
# hatchling: tests/core/test_packaging.py builds the wheels it installs into a fresh environment
# pytest-timeout: a test that hangs fails on its own (see _pytest), the rest of the run goes on
TEST_DEPS = ["pytest>=7", "pytest-timeout>=2.2", "psutil>=5.9", "ipykernel>=6", "jupyter_client>=7.4", "hatchling>=1.27"]
# tests/frontends: the real front ends (Playwright drives Debian's chromium: tests/frontends/install-browser)
FRONTEND_DEPS = ["jupyter_server>=2", "jupyterlab>=4", "nbclient>=0.7", "nbformat>=5", "playwright>=1.40"]


def _bring_up_cluster(session: nox.Session) -> None:
    """As root, start the real test cluster (sshd hosts, SLURM, Grid Engine, PBS/LSF emulators)."""
    if os.environ.get("RIK_NO_CLUSTER"):
        session.log("RIK_NO_CLUSTER is set: not starting the test cluster")
        return
    if os.geteuid() != 0:
        session.log("*** not root: the test cluster cannot be started here; cluster tests will be SKIPPED ***")
        return
    session.run(str(ROOT / "tests" / "cluster" / "up"), external=True)


#: A hung test fails alone, with every thread's stack, instead of taking the whole run's time budget. The slowest
#: real tests (a PBS walltime, queued jobs) take about two minutes.
TEST_TIMEOUT = "400"


def _pytest(session: nox.Session, *paths: str) -> None:
    session.run(
        "python", "-m", "pytest", f"--timeout={TEST_TIMEOUT}", *(session.posargs or paths),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Everything installed together; unit, plugin and real-cluster tests."""
    _bring_up_cluster(session)
    if os.geteuid() == 0:
        session.run(str(ROOT / "tests" / "frontends" / "install-browser"), external=True)
    session.install(*DISTS, *TEST_DEPS, *FRONTEND_DEPS)
    _pytest(session, "--durations=25", "tests")  # the slowest tests listed: the whole run has a time budget
    # Then each distribution on its own: rik-core alone, each plugin with rik-core alone (no plugin secretly needs
    # another), and the example third-party plugin (the public API suffices). Their own posargs: all their tests.
    session.notify("tests-alone", posargs=[])
    session.notify("example-plugin", posargs=[])


@nox.session(name="tests-alone")
def tests_alone(session: nox.Session) -> None:
    """rik-core alone, then each plugin with rik-core alone, in one environment (a plugin is uninstalled before the
    next one is installed): what `tests-core` and every `tests-plugin` prove, without five more environments."""
    session.install("./rik-core", *TEST_DEPS)
    _pytest(session, "tests/core")
    for plugin in PLUGINS:
        session.install(f"./rik-{plugin}")
        _pytest(session, f"tests/{plugin}")
        session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", f"rik-{plugin}")


@nox.session(name="tests-core")
def tests_core(session: nox.Session) -> None:
    """rik-core alone: no plugin installed."""
    session.install("./rik-core", *TEST_DEPS)
    _pytest(session, "tests/core")


@nox.session(name="tests-plugin")
@nox.parametrize("plugin", PLUGINS)
def tests_plugin(session: nox.Session, plugin: str) -> None:
    """One plugin installed alone with rik-core: proves it depends on nothing else."""
    session.install("./rik-core", f"./rik-{plugin}", *TEST_DEPS)
    _pytest(session, f"tests/{plugin}")


@nox.session(name="example-plugin")
def example_plugin(session: nox.Session) -> None:
    """The example third-party plugin (docs/examples/rik-htcondor), installed from its own pyproject with rik-core
    alone: its contract tests, `rik plugins` lists it, a kernel through it against the HTCondor test emulator."""
    _bring_up_cluster(session)
    example = "docs/examples/rik-htcondor"
    session.install("./rik-core", f"./{example}[test]", *TEST_DEPS)
    listed = session.run("rik", "plugins", silent=True) or ""
    if "htcondor (rik-htcondor" not in listed:
        session.error(f"`rik plugins` does not list the example plugin:\n{listed}")
    _pytest(session, f"{example}/tests")


@nox.session
def integration(session: nox.Session) -> None:
    """Only the tests against the real test cluster."""
    _bring_up_cluster(session)
    session.install(*DISTS, *TEST_DEPS)
    _pytest(session, "tests/integration")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff", "mypy", *DISTS, "pytest", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "rik-core", *(f"rik-{p}" for p in PLUGINS))
    session.run("mypy", "rik-core/src/rik", *(f"rik-{p}/src/rik_{p}" for p in PLUGINS))


@nox.session
def demo(session: nox.Session) -> None:
    """Install rik, add a local kernel with `rik manage`, run a cell through it with jupyter_client."""
    session.install("./rik-core", "ipykernel>=6")
    home = Path(tempfile.mkdtemp(prefix="rik-demo-"))
    env = {
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_PATH": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "run"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    try:
        session.run("rik", "manage", "--add", "--interface=local", "--name=Demo", env=env)
        session.run("rik", "manage", "--show", env=env)
        session.run("python", str(ROOT / "docs" / "demo.py"), "rik_local_demo", env=env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@nox.session
def build(session: nox.Session) -> None:
    """All six distributions, each an sdist and a wheel built from it, into dist/; then `twine check --strict`."""
    session.install("build>=1", "twine>=6.1")
    out = ROOT / "dist"
    shutil.rmtree(out, ignore_errors=True)
    for dist in DISTS:
        session.run("python", "-m", "build", "--outdir", str(out), str(ROOT / dist))
    built = sorted(str(p) for p in out.iterdir())
    if len(built) != 2 * len(DISTS):
        session.error(f"expected an sdist and a wheel of each of {len(DISTS)} distributions in dist/, found: {built}")
    session.run("twine", "check", "--strict", *built)
    session.log(f"built into {out}: install with `pip install {out}/*.whl`")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: rik against its floors and remote_ikernel, side by side (not part of the tests).

    `nox -s bench -- --quick` for a short run; benchmarks/README.md has the method and the options."""
    _bring_up_cluster(session)
    session.install(*DISTS, *TEST_DEPS, "pyinstrument", "matplotlib")
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)


if __name__ == "__main__":
    sys.exit("run with: python3 -m nox")
