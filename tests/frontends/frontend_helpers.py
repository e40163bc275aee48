"""What the front-end tests share: async kernel clients (as jupyter_server and nbclient use them), the cluster's
SLURM queue, and kernelspecs on disk."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster import Cluster
from kernels import SLEEPING

COMPUTE = ("rik-c1", "rik-c2")
VIA_FRONT = ("-x", "rik-front", "-t", "rik-gw")  # submit host rik-front behind the gateway rik-gw


def slurm_jobs(cluster: Cluster, user: str = "rik") -> dict[str, str]:
    """``{job id: state}`` of ``user``'s SLURM jobs."""
    out = cluster.run("rik-front", ["squeue", "-h", "-u", user, "-o", "%i %T"], user=user, timeout=30).stdout
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def kernelspec(jupyter_home: Path, name: str) -> dict[str, Any]:
    return json.loads((jupyter_home / "data" / "kernels" / name / "kernel.json").read_text())


async def run(kc: Any, code: str, timeout: float = 60) -> str:
    """Execute ``code`` with an async kernel client; its stdout; AssertionError on an error."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    reply = await kc.execute_interactive(code, timeout=timeout, output_hook=hook, stop_on_error=False)
    if reply["content"]["status"] != "ok" or errors:
        raise AssertionError(f"{code!r} failed: {errors or reply['content']}")
    return "".join(out)


async def interrupt_sleep(kc: Any, interrupt: Callable[[], Awaitable[Any]], timeout: float = 30) -> str:
    """Start a cell that says it is sleeping and sleeps, call ``interrupt()`` once its words arrive; the name of the
    error the cell ends with, once its reply is in. ``stop_on_error=False``: the kernel does not abort the requests
    that follow the error, so the next cell can be sent at once."""
    msg_id = kc.execute(f"import time; print({SLEEPING!r}, flush=True); time.sleep(60)", stop_on_error=False)
    deadline = time.monotonic() + timeout
    interrupted = False
    while time.monotonic() < deadline:
        try:
            msg = await kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and SLEEPING in msg["content"]["text"] and not interrupted:
            interrupted = True
            await interrupt()
        elif msg["msg_type"] == "error":
            await _reply(kc, msg_id)
            return str(msg["content"]["ename"])
    raise AssertionError(f"the sleeping cell did not end within {timeout} s (interrupted: {interrupted})")


async def _reply(kc: Any, msg_id: str) -> None:
    """Take the interrupted cell's reply."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            reply = await kc.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return
    raise AssertionError("no reply to the interrupted cell within 10 s")


class JupyterServer:
    """A real ``jupyter server`` (or ``jupyter lab``) on 127.0.0.1, in the test's isolated Jupyter dirs."""

    def __init__(self, module: str, root: Path, log: Path, *args: str) -> None:
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        self.root = root
        self.log_path = log
        argv = [sys.executable, "-m", module, "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                *(["--allow-root"] if os.geteuid() == 0 else []), *args]
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=root, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("GET", "/api/status")
                return
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{module} did not start: {log.read_text()[-3000:]}") from None
                time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # jupyter shuts its kernels down first
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
