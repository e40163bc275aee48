"""One login per host, and the masters of a chain closing together: a password-only user (``rikpw``) through the
three-hop chain (gateway → front end → node) with ``--askpass``, as at sites that ask for a code at every login.

The kernel's askpass program writes each prompt it gets to a file, then answers with the cluster's own askpass;
ssh's prompt names the host (``rikpw@rik-gw's password:``), so the file counts logins per host. Each test has its
own rik runtime directory (``jupyter_home``), so it starts with no master and makes its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import pytest
from helpers import add_kernel, user_processes
from jupyter_client.manager import KernelManager
from kernels import Kernel, started, wait_until

USER = "rikpw"
HOSTS = ("rik-gw", "rik-front", "rik-c1")
ONE_EACH = dict.fromkeys(HOSTS, 1)


class Prompts:
    def __init__(self, root: Path, answer: Path) -> None:
        self.file = root / "prompts.log"
        self.program = root / "count-askpass"
        self.program.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {self.file}\nexec {answer} "$@"\n')
        self.program.chmod(0o700)

    def per_host(self) -> dict[str, int]:
        lines = self.file.read_text().splitlines() if self.file.exists() else []
        return dict(Counter(m.group(1) if (m := re.search(r"@([\w.-]+)'s", line)) else line for line in lines))


@pytest.fixture
def prompts(cluster, tmp_path: Path) -> Prompts:
    user = cluster.users.get(USER)
    if user is None or user.askpass is None:
        pytest.fail(f"the test cluster has no password-only user {USER}")
    return Prompts(tmp_path, user.askpass)


@pytest.fixture
def pw_kernel(rik, cluster, jupyter_home: Path, prompts: Prompts):
    name = add_kernel(
        rik, cluster, "-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front", "--askpass", str(prompts.program),
        "-n", "Password", user=USER,
    )  # fmt: skip
    before = {line for lines in user_processes(cluster, USER, HOSTS).values() for line in lines}
    yield name
    # The password user's own baseline (the shared one is the key user's); a bench run may use this user too.
    wait_until(
        lambda: not [p for ps in user_processes(cluster, USER, HOSTS).values() for p in ps if p not in before],
        20,
        what=f"nothing of {USER} left on {', '.join(HOSTS)}",
    )


def _answers(k) -> None:
    assert k.run("import socket; print(socket.gethostname())").strip() == "rik-c1"


def masters(runtime: Path) -> list[psutil.Process]:
    """This test's ssh master connections (control sockets in its own rik runtime directory)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if proc.info["name"] == "ssh" and str(runtime) in cmd and (cmd.startswith("ssh: ") or " -N -f " in cmd):
            found.append(proc)
    return found


def tunnel_of(launcher_pid: int) -> psutil.Process | None:
    """The launcher's tunnel: its ssh child with local forwards."""
    for child in psutil.Process(launcher_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() == "ssh" and "-L" in child.cmdline() and "-O" not in child.cmdline():  # not a cancel
                return child
    return None


def listening(port: int) -> bool:
    return any(c.laddr.port == port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN)


def test_three_kernels_in_a_row_log_in_once_per_host(pw_kernel: str, prompts: Prompts) -> None:
    for _ in range(3):
        with started(pw_kernel) as k:
            _answers(k)
    assert prompts.per_host() == ONE_EACH


def test_three_kernels_at_once_log_in_once_per_host(pw_kernel: str, prompts: Prompts) -> None:
    kms = [KernelManager(kernel_name=pw_kernel) for _ in range(3)]
    clients = []
    try:
        for km in kms:
            km.start_kernel()
        for km in kms:
            kc = km.client()
            kc.start_channels()
            clients.append(kc)
            kc.wait_for_ready(timeout=120)
        for km, kc in zip(kms, clients, strict=True):
            _answers(Kernel(km, kc))
    finally:
        for kc in clients:
            kc.stop_channels()
        for km in kms:
            if km.has_kernel:
                km.shutdown_kernel(now=False)
            km.cleanup_resources()
    assert prompts.per_host() == ONE_EACH


def test_a_tunnel_killed_comes_back_without_a_login(pw_kernel: str, prompts: Prompts) -> None:
    with started(pw_kernel) as k:
        k.run("x = 41")
        pid = k.launcher_pid()
        assert pid is not None
        for _ in range(2):
            tunnel = wait_until(lambda: tunnel_of(pid), 20, what="the tunnel")
            assert isinstance(tunnel, psutil.Process)
            tunnel.kill()
            tunnel.wait(10)
            wait_until(lambda old=tunnel.pid: (t := tunnel_of(pid)) is not None and t.pid != old, 30, what="a tunnel")
            assert k.run("print(x + 1)", timeout=60).strip() == "42"
        hb = int(k.km.hb_port)
        wait_until(lambda: listening(hb), 10, what="the heartbeat port")  # the master forwards it for the tunnel...
    wait_until(lambda: not listening(hb), 10, what="the heartbeat port to be let go")  # ...until the kernel ends
    assert prompts.per_host() == ONE_EACH


def test_the_masters_of_the_chain_close_together(pw_kernel: str, prompts: Prompts, jupyter_home: Path) -> None:
    """After the last kernel, the node's master stays for its persist time; the hops' masters follow it within
    seconds (not a persist time each, as when each hop's master waited for the one behind it). The node's master is
    ended here as its persist time would end it."""
    runtime = Path(os.environ["RIK_RUNTIME_DIR"])
    with started(pw_kernel) as k:
        _answers(k)
    assert len(masters(runtime)) == 3  # gateway, front end, node: kept for the next kernel
    config = next(runtime.glob("ssh-*.conf"))
    node = subprocess.run(
        ["ssh", "-F", str(config), "-O", "exit", "rik-c1"], capture_output=True, text=True, timeout=20, check=False
    )
    assert node.returncode == 0, node.stderr
    wait_until(lambda: not masters(runtime), 15, what="every master of the chain to close")
    assert prompts.per_host() == ONE_EACH


def test_rik_doctor_logs_in_once_per_host_and_leaves_no_connection(rik, pw_kernel: str, prompts: Prompts) -> None:
    """Every check on a hop (login, forwarding, the kernel's program, its shell...) rides one connection of doctor's
    own to that hop: one prompt per host, and the connections end with doctor."""
    runtime = Path(os.environ["RIK_RUNTIME_DIR"])
    result = rik("doctor", pw_kernel)
    assert result.code == 0 and "no problems found" in result.out, result.out
    assert prompts.per_host() == ONE_EACH
    left = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "ssh" and str(runtime) in " ".join(p.info["cmdline"] or ())]
    assert not left, [" ".join(p.info["cmdline"]) for p in left]


def test_rik_doctor_rides_the_connections_of_a_running_kernel(rik, pw_kernel: str, prompts: Prompts) -> None:
    """With a kernel running, doctor rides the masters it shares (as the next kernel would): no prompt at all, every
    check still passes, and the kernel keeps its connections."""
    with started(pw_kernel) as k:
        _answers(k)
        assert prompts.per_host() == ONE_EACH
        result = rik("doctor", pw_kernel)
        assert result.code == 0 and "no problems found" in result.out, result.out
        assert result.out.count("rides the connection running kernels share") == len(HOSTS), result.out
        assert prompts.per_host() == ONE_EACH
        _answers(k)
