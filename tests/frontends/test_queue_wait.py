"""Long queue waits through a real jupyter_server, configured as docs/frontends.md says: pending kernels and a rik
kernel with ``--provisioner``. The job is made to wait (another user fills the one-CPU partition ``tiny``) for
longer than the server's ``kernel_info_timeout``: the kernel stays "starting", never "dead", and a notebook's
connection (the websocket JupyterLab opens) works once the job runs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from frontend_helpers import VIA_FRONT, JupyterServer, slurm_jobs
from helpers import add_kernel, assert_nothing_left
from kernels import wait_until
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

KERNEL_INFO_TIMEOUT = 3  # seconds; jupyter_server's default is 60

SERVER_CONFIG = f"""
c.ServerApp.kernel_manager_class = "jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager"
c.MappingKernelManager.use_pending_kernels = True
c.MappingKernelManager.kernel_info_timeout = {KERNEL_INFO_TIMEOUT}
"""


def _server(jupyter_home: Path, tmp_path: Path) -> JupyterServer:
    (jupyter_home / "config" / "jupyter_server_config.py").write_text(SERVER_CONFIG)
    return JupyterServer("jupyter_server", tmp_path, tmp_path / "server.log")


def _fill(cluster) -> str:
    fill = cluster.section("slurm")["fill_queue"]
    return cluster.run("rik-front", ["sbatch", "--parsable", *fill["filler"][1:]], user="rik2", timeout=30,
                       check=True).stdout.strip()


def _queued_job(cluster, before: set[str]) -> str:
    def pending() -> str | None:
        new = [j for j, state in slurm_jobs(cluster).items() if j not in before and state == "PENDING"]
        return new[0] if new else None

    return str(wait_until(pending, 30, what="the kernel's job to be queued"))


async def _execute_over_websocket(server: JupyterServer, kernel_id: str, code: str, on_connecting=None) -> str:
    """What a notebook page does: open the kernel's websocket, send an execute_request, read its stdout."""
    request = HTTPRequest(f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                          headers={"Authorization": f"token {server.token}"}, connect_timeout=180, request_timeout=180)
    connecting = asyncio.ensure_future(websocket_connect(request))
    if on_connecting is not None:
        await asyncio.sleep(1)
        await asyncio.to_thread(on_connecting)
    ws = await asyncio.wait_for(connecting, 180)
    try:
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                       "username": "rik-test", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        out = []
        while True:
            text = await asyncio.wait_for(ws.read_message(), 60)
            assert text is not None, "the server closed the kernel's websocket"
            msg = json.loads(text)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError(msg["content"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()


def test_a_kernel_queued_longer_than_kernel_info_timeout_is_not_declared_dead(rik, cluster, jupyter_home: Path,
                                                                              tmp_path: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "slurm", *VIA_FRONT, "-n", "Queued", "--queue", "tiny", "--provisioner")
    before = set(slurm_jobs(cluster))
    filler = _fill(cluster)
    server = _server(jupyter_home, tmp_path)
    try:
        kernel = server.api("POST", "/api/kernels", {"name": name})  # returns at once: the kernel is pending
        assert kernel["execution_state"] == "starting"
        job = _queued_job(cluster, before)
        time.sleep(KERNEL_INFO_TIMEOUT + 3)  # longer than the server waits for a kernel_info reply
        assert server.api("GET", f"/api/kernels/{kernel['id']}")["execution_state"] == "starting"
        assert slurm_jobs(cluster).get(job) == "PENDING"
        # The provisioner's start still waits for the kernel (the launcher's relay already answers the heartbeat).
        assert "rik: kernel ready" not in (tmp_path / "server.log").read_text()

        def release() -> None:  # the queue moves while the notebook is connecting
            cluster.run("rik-front", ["scancel", filler], user="rik2", timeout=30, check=True)

        out = asyncio.run(_execute_over_websocket(
            server, kernel["id"], "import os, socket; print(socket.gethostname(), os.environ['SLURM_JOB_ID'])",
            on_connecting=release))
        assert out.split() == ["rik-c2", job]  # the only node of partition tiny
        assert "rik: kernel ready" in (tmp_path / "server.log").read_text()
        assert server.api("GET", f"/api/kernels/{kernel['id']}")["execution_state"] in ("idle", "busy")
        server.api("DELETE", f"/api/kernels/{kernel['id']}")
        wait_until(lambda: job not in slurm_jobs(cluster), 30, what=f"job {job} to end")
    finally:
        server.stop()
        cluster.run("rik-front", ["scancel", filler], user="rik2", timeout=30)
    assert "Timeout waiting for kernel_info" not in (tmp_path / "server.log").read_text()
    assert_nothing_left(cluster)


def test_a_kernel_shut_down_while_its_job_is_queued_cancels_the_job(rik, cluster, jupyter_home: Path,
                                                                    tmp_path: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "slurm", *VIA_FRONT, "-n", "Cancel", "--queue", "tiny", "--provisioner")
    before = set(slurm_jobs(cluster))
    filler = _fill(cluster)
    server = _server(jupyter_home, tmp_path)
    try:
        kernel = server.api("POST", "/api/kernels", {"name": name})
        job = _queued_job(cluster, before)
        server.api("DELETE", f"/api/kernels/{kernel['id']}")  # the notebook closes, or "Shut Down Kernel"
        wait_until(lambda: job not in slurm_jobs(cluster), 30, what=f"the queued job {job} to be cancelled")
        wait_until(lambda: not server.api("GET", "/api/kernels"), 30, what="the server to forget the kernel")
    finally:
        server.stop()
        cluster.run("rik-front", ["scancel", filler], user="rik2", timeout=30)
    assert_nothing_left(cluster)
