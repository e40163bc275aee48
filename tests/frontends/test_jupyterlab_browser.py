"""JupyterLab in a real browser: headless Chromium (Debian's) driven by Playwright opens a notebook on a SLURM
kernel and on an SSH-chain kernel, runs a cell, interrupts a sleeping cell from the toolbar, restarts, shuts the
kernel down from the Kernel menu, and the cluster holds nothing of it afterwards.

A screenshot per step goes to ``test-artifacts/jupyterlab/<kernel>/`` (git ignores it; CI keeps it as an
artifact). The SSH kernel goes through rik's kernel provisioner, the SLURM one through the plain argv kernelspec
with signal interrupts: both ways a JupyterLab user can have.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from frontend_helpers import COMPUTE, VIA_FRONT, JupyterServer, slurm_jobs
from helpers import add_kernel, assert_nothing_left
from kernels import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "jupyterlab"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL = Path(__file__).resolve().parent / "install-browser"
TIMEOUT_MS = 90_000


@dataclass(frozen=True)
class Case:
    id: str
    manage: tuple[str, ...]
    hosts: tuple[str, ...]  # where the kernel may run
    slurm: bool


CASES = [
    Case("slurm", ("-i", "slurm", *VIA_FRONT, "-n", "Lab", "--interrupt-mode", "signal"), COMPUTE, True),
    Case("ssh-chain", ("-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front", "-n", "Lab", "--provisioner"),
         ("rik-c1",), False),
]

CELLS = [
    "x = 41\nimport os, socket\nprint('RIK-HOST', socket.gethostname(), os.environ.get('SLURM_JOB_ID', '-'))",
    "import time\ntime.sleep(600)",
    "import os, socket\nprint('RIK-AFTER', 'x' in globals(), socket.gethostname(), os.environ.get('SLURM_JOB_ID', '-'))",
]


def _missing(why: str) -> None:
    message = f"*** JupyterLab browser tests need {why} ***"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium through Playwright (never a browser of Playwright's own)."""
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0:
        subprocess.run([str(INSTALL)], check=False, timeout=600)
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} (as root: {INSTALL.relative_to(ROOT)}, or apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python (pip install playwright; no `playwright install`: Debian's Chromium is used)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Steps:
    """The page, and one screenshot per step, numbered in order."""

    def __init__(self, page, directory: Path) -> None:
        self.page = page
        self.dir = directory
        self.n = 0
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.png"):
            old.unlink()

    def shot(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{step}.png"))

    def kernel_status(self) -> str:
        """The status bar's kernel item, as a person reads it: ``<kernel> | Idle``, ``No Kernel | ...``."""
        item = self.page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')
        return item.inner_text().strip() if item.count() else ""

    def status(self, state: str) -> None:
        """Wait until the status bar shows the notebook's kernel in ``state`` (Idle, Busy)."""
        wait_until(lambda: re.fullmatch(rf"(?!No Kernel).+ \| {state}", self.kernel_status()), TIMEOUT_MS / 1000,
                   interval=0.2, what=f"the kernel to be {state} (status bar: {self.kernel_status()!r})")

    def run_cell(self, index: int) -> None:
        cell = self.page.locator(".jp-Notebook .jp-Cell").nth(index)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")

    def output(self, index: int, pattern: str) -> re.Match:
        """Wait for cell ``index``'s output (as shown on the page) to match ``pattern``."""
        area = self.page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")
        found: list[re.Match] = []

        def seen() -> bool:
            m = re.search(pattern, area.inner_text())
            if m:
                found.append(m)
            return bool(m)

        wait_until(seen, TIMEOUT_MS / 1000, interval=0.25, what=f"cell {index} to show {pattern!r}")
        return found[-1]

    def toolbar(self, command: str) -> None:
        self.page.locator(f'.jp-NotebookPanel-toolbar [data-command="{command}"]').click()

    def accept_dialog(self) -> None:
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        self.page.wait_for_selector(".jp-Dialog", state="detached", timeout=TIMEOUT_MS)

    def menu(self, menu: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


def _lab_settings(jupyter_home: Path) -> None:
    """No news pop-up over the notebook (JupyterLab would ask whether to fetch news)."""
    settings = jupyter_home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_notebook_in_jupyterlab_in_a_real_browser(rik, cluster, jupyter_home: Path, tmp_path: Path, chromium,
                                                    case: Case) -> None:
    name = add_kernel(rik, cluster, *case.manage)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": name, "display_name": "rik", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nbformat.write(nb, notebooks / "rik.ipynb")
    _lab_settings(jupyter_home)
    before = set(slurm_jobs(cluster))

    lab = JupyterServer("jupyterlab", notebooks, tmp_path / "lab.log")
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    steps = Steps(page, ARTIFACTS / case.id)
    jobs: list[str] = []
    try:
        # Open the notebook: JupyterLab starts the kernel its metadata names.
        page.goto(f"{lab.base}/lab/tree/rik.ipynb?token={lab.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
        steps.status("Idle")
        steps.shot("opened")

        # A cell that prints where it runs: the compute node's name is on the page.
        steps.run_cell(0)
        host, job = steps.output(0, r"RIK-HOST (\S+) (\S+)").groups()
        assert host in case.hosts
        if case.slurm:
            assert job in slurm_jobs(cluster)
            jobs.append(job)
        steps.status("Idle")
        steps.shot("hostname")

        # A sleeping cell, interrupted from the toolbar.
        steps.run_cell(1)
        steps.status("Busy")
        steps.shot("sleeping")
        steps.toolbar("notebook:interrupt-kernel")
        steps.output(1, r"KeyboardInterrupt")
        steps.status("Idle")
        steps.shot("interrupted")

        # Restart from the toolbar (and its dialog): a fresh kernel, in the same job for SLURM (no queue wait).
        steps.toolbar("notebook:restart-kernel")
        page.wait_for_selector(".jp-Dialog", timeout=TIMEOUT_MS)
        steps.shot("restart-dialog")
        steps.accept_dialog()
        wait_until(lambda: not steps.kernel_status().endswith("| Idle"), 15, interval=0.05,
                   what="the status bar to show the restart")
        steps.status("Idle")
        steps.run_cell(2)
        fresh, host2, job2 = steps.output(2, r"RIK-AFTER (\S+) (\S+) (\S+)").groups()
        assert fresh == "False" and host2 in case.hosts
        if case.slurm:
            assert job2 == job and job in slurm_jobs(cluster)
        steps.status("Idle")
        steps.shot("restarted")

        # Shut the kernel down from the Kernel menu.
        steps.menu("Kernel", "Shut Down Kernel")
        wait_until(lambda: steps.kernel_status().startswith("No Kernel"), TIMEOUT_MS / 1000,
                   what="the status bar to show no kernel")
        wait_until(lambda: not lab.api("GET", "/api/kernels"), 60, what="the server to have no kernel")
        steps.shot("shut-down")
    except Exception:
        steps.shot("failed")
        raise
    finally:
        context.close()
        lab.stop()
    # Nothing of the kernel is left: no job in the queue, no process on any host.
    assert not set(jobs) & set(slurm_jobs(cluster))
    assert set(slurm_jobs(cluster)) <= before
    assert_nothing_left(cluster)
