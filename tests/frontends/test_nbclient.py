"""A notebook executed headless (nbclient, what papermill and ``jupyter execute`` run) on a SLURM kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from frontend_helpers import COMPUTE, VIA_FRONT, slurm_jobs
from helpers import add_kernel, assert_nothing_left
from nbclient import NotebookClient


@pytest.mark.parametrize("provisioner", [False, True], ids=["argv", "provisioner"])
def test_a_notebook_runs_headless_on_a_slurm_kernel(rik, cluster, jupyter_home: Path, tmp_path: Path,
                                                    provisioner: bool) -> None:
    name = add_kernel(rik, cluster, "-i", "slurm", *VIA_FRONT, "-n", "Batch", "--cpus", "2",
                      *(["--provisioner"] if provisioner else []))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": name, "display_name": "Batch", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import os, socket\nprint(socket.gethostname())"),
        nbformat.v4.new_code_cell("print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_CPUS_PER_TASK'])"),
        nbformat.v4.new_code_cell("6 * 7"),
    ]
    path = tmp_path / "batch.ipynb"
    nbformat.write(nb, path)

    executed = nbformat.read(path, as_version=4)
    NotebookClient(executed, timeout=120, startup_timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(executed, path)

    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)
    host = saved.cells[0].outputs[0]["text"].strip()
    job, cpus = saved.cells[1].outputs[0]["text"].split()
    assert host in COMPUTE and cpus == "2"
    assert saved.cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert saved.metadata["kernelspec"]["name"] == name
    # nbclient shut the kernel down: the job is gone and nothing of it is left on the nodes.
    assert job not in slurm_jobs(cluster)
    assert_nothing_left(cluster, hosts=COMPUTE)
