"""A real kernel through rik-htcondor, on rik's test cluster, in a job of the HTCondor TEST EMULATOR.

Needs root and rik's test cluster (``sudo tests/cluster/up`` in rik's repository): the emulator is installed in
/opt/rik-emulators/htcondor, the kernel's job is submitted on rik-front behind rik-gw and runs on rik-c1 or rik-c2
with the Debian ipykernel there. Skipped elsewhere (failed under CI=true).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLUSTER = Path(os.environ.get("RIK_CLUSTER_DIR", "/run/rik-testcluster"))
EMULATOR = Path(__file__).resolve().parents[1] / "emulator" / "condor_emulator.py"
PREFIX = "/opt/rik-emulators/htcondor"
PY = "/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"


@pytest.fixture(scope="module")
def cluster() -> dict:
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (the emulator is installed in /opt, the hosts are network namespaces)"
    elif not (CLUSTER / "cluster.json").exists():
        reason = f"rik's test cluster is not up ({CLUSTER}/cluster.json): run `sudo tests/cluster/up`"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    subprocess.run(["/usr/bin/python3", str(EMULATOR), "install", PREFIX], check=True, capture_output=True)
    return json.loads((CLUSTER / "cluster.json").read_text())


def on_front(cluster: dict, *argv: str) -> str:
    host = cluster["hosts"]["rik-front"]
    cmd = ["nsenter", f"--net={host['netns']}", f"--uts={host['uts']}", "--", "runuser", "-u", "rik", "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/").stdout


def test_a_kernel_runs_in_an_emulated_htcondor_interactive_job(cluster: dict, rik_jupyter: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    added = subprocess.run(
        [sys.executable, "-m", "rik", "manage", "--add", "-i", "htcondor", "-x", "rik-front", "-t", "rik-gw",
         "--ssh-config", str(CLUSTER / "ssh_config"), "-k", PY, "-n", "Condor", "--cpus", "2",
         "--launch-cmd", f"{PREFIX}/bin/condor_submit"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    name = added.stdout.split("'")[1]
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=90)
    try:
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        code = "import json, os, socket; print(json.dumps([socket.gethostname(), os.getpid(), dict(os.environ)]))"
        reply = kc.execute_interactive(code, output_hook=hook, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        host, kernel_pid, env = json.loads("".join(out))
        assert host in ("rik-c1", "rik-c2")
        assert env["_CONDOR_SLOT_NAME"] == f"slot1_1@{host}" and env["_CONDOR_REQUEST_CPUS"] == "2"
        queue = on_front(cluster, f"{PREFIX}/bin/condor_q")
        assert "1 jobs;" in queue and "1 running" in queue, queue
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    # The job leaves the queue (rik cancels it with condor_rm) and the kernel is gone from the node.
    deadline = time.monotonic() + 30
    while "0 jobs;" not in on_front(cluster, f"{PREFIX}/bin/condor_q") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "0 jobs;" in on_front(cluster, f"{PREFIX}/bin/condor_q")
    while Path(f"/proc/{kernel_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the hosts share one pid namespace: the node's kernel pid is visible here
    assert not Path(f"/proc/{kernel_pid}").exists(), "the kernel outlived its job"
