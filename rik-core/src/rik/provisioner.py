"""rik's jupyter_client kernel provisioner: ``rik manage --add --provisioner``.

A kernelspec whose ``metadata.kernel_provisioner.provisioner_name`` is ``rik-provisioner`` is started by
jupyter_client (7 and later: JupyterLab, Notebook 7, jupyter_server, nbclient, papermill) through this class
instead of its default one. It runs the same launcher as every rik kernelspec (the spec's argv,
``python -m rik --kernel-config JSON -f {connection_file}``), so the configuration and the behaviour are the same:
interrupts (signal or message), shutdown that ends the kernel and cancels the job, a launcher that cleans up
whatever happens to it. What only a provisioner can add:

- **A start that lasts as long as the queue.** The start returns once the job runs and the kernel answers a
  ``kernel_info_request`` (on control, signed with its key) through the tunnel, not as soon as the launcher process
  exists. (Not its heartbeat: the launcher's relay answers that itself while the kernel starts, see
  rik.launch.control.) With jupyter_server's pending kernels
  (``use_pending_kernels``) the notebook opens at once and shows the kernel as starting while the job waits;
  ``kernel_info_timeout`` counts only from the moment the kernel runs, so a long queue wait never makes the kernel
  "dead" (docs/frontends.md).
- **Cancel while queued.** A kernel shut down while its job still waits (jupyter_server cancels the pending start)
  stops the launcher, which cancels the job.
- **The reason of a failed start, in the front end.** The launcher's messages still go to the server's log; the
  last ones also become the error the front end shows.
- **Restart told apart from shutdown.** A restart starts the new kernel in the same job (the launcher sees the
  frontend's request); a shutdown ends the kernel and cancels its job. The launcher is given the time to cancel the
  job before it is killed.
- **The notebook's kernel back after a server restart.** jupyter_server names the notebook of every kernel it starts
  (``JPY_SESSION_NAME``). When the Jupyter server is restarted (or killed) and the notebook is opened again while
  its kernel still waits, detached, in its window, the provisioner gives jupyter_client that kernel's key (from
  rik's private record), and the launcher reattaches to it instead of starting a new job: same kernel, same state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import subprocess
import threading
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from .kernelspecs import PROVISIONER_NAME

__all__ = ["PROVISIONER_NAME", "RikProvisioner"]

_PROBE_SECONDS = 1.0  # how often the wait for the kernel looks at the launcher and at a cancelled start
_ASK_FIRST, _ASK_MOST = 1.0, 30.0  # kernel_info asked again after 1 s, 2 s, 4 s… at most every 30 s
_SHUTDOWN_SECONDS = 20.0  # at least this long before jupyter_client kills a launcher that is still cleaning up


class RikProvisioner(LocalProvisioner):
    """Launches rik's launcher and reports the kernel started only once it answers."""

    _restart: bool | None = None  # what the last shutdown was for: restart (True) or shutdown (False)
    _tail: collections.deque[str] | None = None  # the launcher's last lines on stderr
    _pump: threading.Thread | None = None

    # -- start -------------------------------------------------------------------------------------------------
    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        notebook = (kwargs.get("env") or {}).get("JPY_SESSION_NAME")
        if notebook and self.parent is not None:
            key = _detached_key(str(notebook))
            if key:
                self.log.info("rik: reattaching to the detached kernel of %s", notebook)
                self.parent.session.key = key.encode()
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self._restart = None
        capture = kwargs.get("stderr") is None
        if capture:
            kwargs["stderr"] = subprocess.PIPE
        connection_info = await super().launch_kernel(cmd, **kwargs)
        if capture:
            self._start_pump()
        self.log.info("rik: kernel launcher %s started; waiting for the kernel (and its job)", self.pid)
        await self._until_ready()
        self.log.info("rik: kernel ready (launcher %s)", self.pid)
        return connection_info

    def _start_pump(self) -> None:
        """Copy the launcher's stderr to ours (as the argv form would), keeping the last lines for errors."""
        assert self.process is not None and self.process.stderr is not None
        fd = os.dup(self.process.stderr.fileno())  # ours: jupyter_client closes the pipe object when it reaps
        self.process.stderr.close()
        tail: collections.deque[str] = collections.deque(maxlen=20)
        self._tail = tail

        def pump() -> None:
            pending = b""
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    with contextlib.suppress(OSError):
                        os.write(2, data)
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    tail.extend(line.decode("utf-8", "replace") for line in lines if line.strip())
            except OSError:
                pass
            finally:
                if pending.strip():
                    tail.append(pending.decode("utf-8", "replace"))
                os.close(fd)

        self._pump = threading.Thread(target=pump, name=f"rik-launcher-{self.pid}-stderr", daemon=True)
        self._pump.start()

    async def _until_ready(self) -> None:
        """Until the kernel answers ``kernel_info`` on control. The relay holds a request until the kernel is up (a
        queued job: hours), so it is asked again only seldom; without the relay, a request can be lost in a tunnel
        that connected before the kernel was there."""
        from jupyter_client.session import Session

        info = self.connection_info
        transport, ip, port = info.get("transport", "tcp"), info.get("ip", "127.0.0.1"), info["control_port"]
        url = f"tcp://{ip}:{port}" if transport == "tcp" else f"ipc://{ip}-{port}"
        key = info.get("key") or b""
        session = Session(
            key=key.encode() if isinstance(key, str) else bytes(key),
            signature_scheme=str(info.get("signature_scheme") or "hmac-sha256"),
        )
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        loop = asyncio.get_running_loop()
        asked: set[str] = set()
        next_ask, every = 0.0, _ASK_FIRST
        try:
            sock.connect(url)
            while True:
                status = self.process.poll() if self.process is not None else 0
                if status is not None:
                    raise RuntimeError(await self._failure(status))
                if self._start_cancelled():
                    await self._abandon()
                    # Cancelled, not failed: jupyter_client has nothing to report (its ready future is cancelled).
                    raise asyncio.CancelledError("the kernel was shut down before it started; its job is cancelled")
                if loop.time() >= next_ask:
                    request = session.msg("kernel_info_request")
                    await sock.send_multipart(session.serialize(request))
                    asked.add(request["header"]["msg_id"])
                    next_ask, every = loop.time() + every, min(every * 2, _ASK_MOST)
                answered = await sock.poll(int(_PROBE_SECONDS * 1000))
                if answered and _answers(session, await sock.recv_multipart(), asked):
                    return
        except asyncio.CancelledError:
            await self._abandon()
            raise
        finally:
            sock.close(linger=0)
            context.destroy(linger=0)

    def _start_cancelled(self) -> bool:
        """jupyter_server cancels a pending kernel's ``ready`` future when that kernel is shut down."""
        ready = getattr(self.parent, "_ready", None)
        return bool(ready is not None and ready.cancelled())

    async def _abandon(self) -> None:
        """Stop a launcher whose kernel is no longer wanted: SIGTERM makes it cancel the job and clean up."""
        if self.process is None or self.process.poll() is not None:
            return
        self.log.info("rik: kernel start cancelled; stopping launcher %s (it cancels the job)", self.pid)
        await self.terminate()
        try:
            await asyncio.wait_for(self.wait(), timeout=_SHUTDOWN_SECONDS)
        except asyncio.TimeoutError:
            await self.kill()
            await self.wait()

    async def _failure(self, status: int) -> str:
        if self._pump is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._pump.join, 2.0)
        lines = [_strip_prefix(line) for line in (self._tail or ()) if line.strip()]
        said = lines[-1] if lines else ""  # the launcher ends with its reason
        return f"the rik launcher exited (status {status}) before the kernel was ready" + (f": {said}" if said else "")

    # -- shutdown and restart ----------------------------------------------------------------------------------
    async def shutdown_requested(self, restart: bool = False) -> None:
        self._restart = restart
        if restart:
            self.log.info("rik: restarting: the launcher ends the kernel and cancels its job, then a new one starts")
        await super().shutdown_requested(restart=restart)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        # jupyter_client sends SIGTERM after half of this and SIGKILL after all of it: leave the launcher the time
        # to end the kernel and cancel the job through the gateways (a killed launcher cannot cancel anything).
        return max(recommended, _SHUTDOWN_SECONDS)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)  # ports are kept across a restart, released on shutdown
        if self._pump is not None and not self._pump.is_alive():
            self._pump = None

    @property
    def restarting(self) -> bool | None:
        """True while a restart is under way, False for a shutdown, None before either was asked for."""
        return self._restart


def _detached_key(notebook: str) -> str | None:
    """The key of the detached kernel of ``notebook`` (launcher gone, holder known, in its window), if any."""
    from .lifecycle import status_of
    from .state import load_all

    for record in load_all():
        if record.session_name == notebook and status_of(record) == "detached":
            return record.key()
    return None


def _answers(session: Any, frames: list[bytes], asked: set[str]) -> bool:
    """Whether ``frames`` are a validly signed reply to one of the requests ``asked``."""
    try:
        _, parts = session.feed_identities(frames)
        reply = session.deserialize(parts)
    except Exception:  # not a Jupyter message, or not signed with the kernel's key
        return False
    return reply.get("parent_header", {}).get("msg_id") in asked


def _strip_prefix(line: str) -> str:
    """``[rik 12:00:00.000] message`` -> ``message``."""
    line = line.strip()
    if line.startswith("[rik ") and "] " in line:
        return line.split("] ", 1)[1]
    return line
