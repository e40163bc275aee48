"""The launcher's channel relay against a real local ipykernel, with a stand-in for the tunnel that can be cut and
brought back: no cluster, no root.

What must hold when the connection to the kernel breaks and comes back: a request the notebook sends around the
break reaches the kernel exactly once, and only once the relay's IOPub subscription has reached the kernel again,
so its output is never published to nobody.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from rik.launch.control import RELAYED, ChannelRelay


class Tunnel:
    """Unix sockets at the relay's inner paths, each forwarded to the kernel's TCP port, as ssh's ``-L`` does."""

    def __init__(self, inner: dict[str, Path], ports: dict[str, int]) -> None:
        self.inner, self.ports = inner, ports
        self.listeners: dict[str, socket.socket] = {}
        self.conns: list[tuple[str, socket.socket]] = []
        self.lock = threading.Lock()

    def up(self, late: dict[str, float] | None = None) -> None:
        """Listen on every channel that is down; those in ``late`` only after that many seconds."""
        for ch in RELAYED:
            if ch in self.listeners:
                continue
            delay = (late or {}).get(ch, 0.0)
            if delay:
                threading.Timer(delay, self._listen, (ch,)).start()
            else:
                self._listen(ch)

    def _listen(self, ch: str) -> None:
        path = self.inner[ch]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(8)
        with self.lock:
            self.listeners[ch] = sock
        threading.Thread(target=self._accept, args=(ch, sock), daemon=True).start()

    def _accept(self, ch: str, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                kernel = socket.create_connection(("127.0.0.1", self.ports[ch]))
            except OSError:  # the kernel has not bound its port yet: as ssh, close the client's connection
                client.close()
                continue
            with self.lock:
                if self.listeners.get(ch) is not listener:  # cut while accepting
                    client.close()
                    kernel.close()
                    continue
                self.conns += [(ch, client), (ch, kernel)]
            for a, b in ((client, kernel), (kernel, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def down(self, only: tuple[str, ...] = RELAYED) -> None:
        """The channels' connections die (all of them: as when the ssh process carrying them is killed)."""
        with self.lock:
            listeners = [self.listeners.pop(ch) for ch in only if ch in self.listeners]
            conns = [s for ch, s in self.conns if ch in only]
            self.conns = [(ch, s) for ch, s in self.conns if ch not in only]
        for s in [*listeners, *conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def kernel() -> Iterator[KernelManager]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


@pytest.fixture
def relayed() -> Iterator[tuple[BlockingKernelClient, Tunnel]]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    directory = Path(tempfile.mkdtemp(prefix="rik-relay-", dir="/tmp"))  # Unix socket paths are short
    relay = tunnel = client = None
    try:
        info = km.get_connection_info()
        kernel_ports = {ch: int(info[ch]) for ch in RELAYED}
        front = {ch: _free_port() for ch in RELAYED}
        relay = ChannelRelay(front, directory, info["key"].decode(), info["signature_scheme"], None)
        tunnel = Tunnel(relay.inner, kernel_ports)
        tunnel.up()
        client = BlockingKernelClient()
        client.load_connection_info({**info, **front})
        client.start_channels()
        client.wait_for_ready(timeout=30)
        yield client, tunnel
    finally:
        if client is not None:
            client.stop_channels()
        if tunnel is not None:
            tunnel.down()
        if relay is not None:
            relay.close()
        km.shutdown_kernel(now=True)
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outcome(client: BlockingKernelClient, msg_id: str, timeout: float = 20) -> tuple[str, list[str]]:
    """What the request printed (its IOPub stream, up to its idle status) and every status IOPub carried for it."""
    out: list[str] = []
    states: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=0.2)
        except Exception:  # queue.Empty
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "status":
            states.append(msg["content"]["execution_state"])
            if states[-1] == "idle":
                break
    else:
        raise AssertionError(f"no idle status for the request; got {states} and output {out!r}")
    return "".join(out), states


def _count(client: BlockingKernelClient) -> str:
    msg_id = client.execute("print(n)")
    out, _ = _outcome(client, msg_id)
    return out.strip()


@pytest.mark.parametrize("first", ["all", "shell"])
@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_a_request_sent_as_the_tunnel_dies_runs_once_with_its_output_after_it_comes_back(
    relayed, pause: float, first: str
) -> None:
    client, tunnel = relayed
    client.execute_interactive("n = 0", timeout=20)
    for round_ in range(1, 3):
        # The channels' connections die in no set order: when shell's goes first, the request is sent while the
        # relay still sees IOPub connected.
        tunnel.down(RELAYED if first == "all" else ("shell_port",))
        time.sleep(pause)  # 0: the request races the relay's noticing the break
        msg_id = client.execute("n += 1; print(n)")
        time.sleep(0.3)
        tunnel.down()
        # Shell and control are back at once; IOPub only later, so a request let through before the relay's
        # subscription has reached the kernel again would publish its output to nobody.
        tunnel.up(late={"iopub_port": 0.6})
        out, states = _outcome(client, msg_id)
        assert (out.strip(), states) == (str(round_), ["busy", "idle"])
        reply = client.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
    assert _count(client) == "2"  # each request ran exactly once


def test_the_relays_own_probes_reach_no_frontend(relayed) -> None:
    """After the tunnel comes back the relay probes the kernel; the frontend sees only its own request's messages."""
    client, tunnel = relayed
    while True:  # what the start left on IOPub
        try:
            client.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            break
    tunnel.down()
    time.sleep(0.3)
    tunnel.up()
    msg_id = client.kernel_info()  # waits in the relay until its probe has confirmed the subscription
    reply = client.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    parents = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            parents.append(client.get_iopub_msg(timeout=0.2)["parent_header"].get("msg_id"))
        except queue.Empty:
            continue
    assert msg_id in parents  # IOPub reaches the frontend...
    # ...and carries nothing of the relay's probes (the kernel's own parentless messages, such as ipykernel 7's
    # welcome to a new subscriber, pass as they are)
    assert set(parents) - {None} == {msg_id}, parents
    for channel in (client.control_channel, client.shell_channel):  # the probes' replies come back on control
        with pytest.raises(queue.Empty):
            channel.get_msg(timeout=0.5)


def _beats(port: int, timeout: float = 0.5) -> bool:
    """One heartbeat, as a frontend sends it (a REQ socket): whether it comes back within ``timeout``."""
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(b"ping")
        return bool(sock.poll(int(timeout * 1000))) and sock.recv() == b"ping"
    finally:
        sock.close(0)


def test_a_frontend_connected_while_the_kernel_starts_hears_a_heartbeat_and_its_answer_once_it_is_up(kernel) -> None:
    """The relay binds the frontend's ports before the kernel is up: the heartbeat says the kernel is coming, and
    a ``kernel_info`` sent then is answered once the relay reaches the kernel (a frontend that finds the ports
    listened on, as VS Code does, gives up on a kernel whose heartbeat is silent while it waits)."""
    info = kernel.get_connection_info()
    directory = Path(tempfile.mkdtemp(prefix="rik-relay-", dir="/tmp"))
    front = {ch: _free_port() for ch in RELAYED}
    relay = ChannelRelay(front, directory, info["key"].decode(), info["signature_scheme"], None, connect=False)
    tunnel = Tunnel(relay.inner, {ch: int(info[ch]) for ch in RELAYED})
    client = BlockingKernelClient()
    try:
        client.load_connection_info({**info, **front})
        client.start_channels()
        msg_id = client.kernel_info()
        for _ in range(3):
            assert _beats(front["hb_port"])  # answered by the relay: the kernel is not reached yet
        with pytest.raises(queue.Empty):
            client.get_shell_msg(timeout=0.5)
        assert client.is_alive()  # jupyter_client's own heartbeat agrees
        tunnel.up()
        relay.connect()
        reply = client.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["msg_type"] == "kernel_info_reply"
        assert _beats(front["hb_port"], timeout=5)
    finally:
        client.stop_channels()
        tunnel.down()
        relay.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_once_the_kernel_is_up_only_the_kernel_answers_the_heartbeat(relayed) -> None:
    """The tunnel down: no answer (the kernel is out of reach); back: the kernel's own answer again."""
    client, tunnel = relayed
    port = client.hb_port
    assert _beats(port, timeout=5)
    tunnel.down()
    time.sleep(0.3)
    assert not _beats(port, timeout=1.0)
    tunnel.up()
    deadline = time.monotonic() + 20
    while not _beats(port):
        assert time.monotonic() < deadline, "the heartbeat did not come back with the tunnel"
