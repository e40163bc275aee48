"""A queued job's wait, shown on a terminal: job id, state and time waited, refreshed in place; plain log lines
when the launcher's output is not a terminal (a Jupyter server's log)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from rik.testing import Print, Shell, Wait, add_kernel, python_kernel_cmd

QUEUED = "srun: job {job_id} queued and waiting for resources\n"
ALLOCATED = "srun: job {job_id} has been allocated resources\n"


def _launch(name: str, tmp_path: Path, *, tty: bool) -> bytes:
    spec = KernelSpecManager().get_kernel_spec(name)
    ports = []
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    conn = tmp_path / f"kernel-{tty}.json"
    names = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    conn.write_text(json.dumps({**dict(zip(names, ports, strict=True)), "ip": "127.0.0.1", "transport": "tcp",
                                "key": "s3cr3t-progress-key", "signature_scheme": "hmac-sha256"}))
    argv = [a.replace("{connection_file}", str(conn)) for a in spec.argv]
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        fd = master
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
    out = b""
    deadline = time.monotonic() + 60
    try:
        while b"kernel " not in out.split(b"running", 1)[-1] and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if tty:
            os.close(fd)
        elif proc.stderr is not None:
            proc.stderr.close()
    return out


def test_a_queued_job_shows_its_wait_in_place_on_a_terminal_and_plain_lines_elsewhere(rik_jupyter, fake_scheduler, tmp_path: Path) -> None:
    steps = (Print(QUEUED, stderr=True), Wait(1.5), Print(ALLOCATED, stderr=True), Shell(env={"SLURM_JOB_ID": "{job_id}"}))
    fake = fake_scheduler("srun", steps, cancel="scancel")
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "-n", "Wait", *fake.kernel_args())
    shown = _launch(name, tmp_path, tty=True)
    assert b"\r\x1b[K[rik] " in shown and b" job 1001 queued" in shown and b"waited 0m0" in shown, shown
    assert b"s3cr3t-progress-key" not in shown
    plain = _launch(name, tmp_path, tty=False)
    assert b"\x1b[K" not in plain and b"job 1002 queued" in plain, plain  # the second job


def test_a_queued_job_whose_launcher_was_killed_is_withdrawn_when_its_window_runs_out(rik_jupyter, fake_scheduler, tmp_path: Path) -> None:
    """Nothing burns unseen: a job still waiting when its launcher is killed is not left to start with nobody there."""
    from kernels import wait_until
    from rik.testing import running_kernel  # noqa: F401  (the fixture's kernels live in rik_jupyter)

    fake = fake_scheduler("srun", (Print(QUEUED, stderr=True), Wait(None)), cancel="scancel")
    name = add_kernel("-i", "slurm", "-k", python_kernel_cmd(), "-n", "Killed", "--grace", "6", *fake.kernel_args())
    spec = KernelSpecManager().get_kernel_spec(name)
    conn = tmp_path / "kernel.json"
    conn.write_text(json.dumps({"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
                                "ip": "127.0.0.1", "transport": "tcp", "key": "k3y", "signature_scheme": "hmac-sha256"}))
    argv = [a.replace("{connection_file}", str(conn)) for a in spec.argv]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: fake.running(), 30, what="the fake job to be queued")
        proc.kill()
        proc.wait(10)
        wait_until(lambda: not fake.running(), 40, what="the queued job to be withdrawn")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
