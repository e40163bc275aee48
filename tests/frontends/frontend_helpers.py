"""What the front-end tests share: async kernel clients (as jupyter_server and nbclient use them), the cluster's
SLURM queue, and kernelspecs on disk."""

from __future__ import annotations

import asyncio
import json
import queue
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster import Cluster

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
    """Start ``time.sleep(60)``, call ``interrupt()`` once it runs; the name of the error the cell ends with."""
    msg_id = kc.execute("import time; time.sleep(60)")
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        try:
            msg = await kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "execute_input" and not started:
            started = True
            await asyncio.sleep(0.5)
            await interrupt()
        elif msg["msg_type"] == "error":
            await _reply(kc, msg_id)
            return str(msg["content"]["ename"])
    raise AssertionError(f"the sleeping cell did not end within {timeout} s (started: {started})")


async def _reply(kc: Any, msg_id: str) -> None:
    """Take the interrupted cell's reply, and let the kernel's abort-after-error window pass."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            reply = await kc.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    await asyncio.sleep(0.5)
