"""SSH kernels against real sshd hosts: gateway → login → compute, real ipykernel and IRkernel."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import IR, PY, add_kernel, assert_nothing_left, user_processes
from kernels import started, wait_until

CHAIN = ("-t", "rik-gw", "rik-front")


def test_kernel_on_the_compute_node_behind_gateway_and_login(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Chain")
    with started(name) as k:
        assert k.run("import socket; print(socket.gethostname())").strip() == "rik-c1"
        assert k.run("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)").strip() == "rik"
        k.run("x = 41")
        assert k.interrupt_sleep() == "KeyboardInterrupt"
        assert k.run("print(x + 1)").strip() == "42"
        k.restart()
        assert k.run("print('x' in globals())").strip() == "False"
    assert_nothing_left(cluster)


def _listen(cluster, host: str, ports: list[int], user: str = "rik2") -> subprocess.Popen:
    code = (
        "import socket, sys, time\n"
        "socks = []\n"
        "for p in map(int, sys.argv[1:]):\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    s.bind(('127.0.0.1', p)); s.listen(); socks.append(s)\n"
        "print('listening', flush=True); time.sleep(300)\n"
    )
    argv = cluster.host_argv(host, ["/usr/bin/python3", "-c", code, *map(str, ports)], user=user)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    return proc


def test_ports_taken_by_another_user_on_every_hop_do_not_matter(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Ports")
    ports = []
    for _ in range(5):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    blockers = [_listen(cluster, host, ports) for host in ("rik-gw", "rik-front", "rik-c1")]
    try:
        kw = dict(zip(("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"), ports, strict=True))
        with started(name, cache_ports=False, **kw) as k:
            assert [k.km.shell_port, k.km.hb_port] == [ports[0], ports[4]]
            assert k.run("import socket; print(socket.gethostname())").strip() == "rik-c1"
    finally:
        for b in blockers:
            b.kill()
            b.wait()
            if b.stdout is not None:
                b.stdout.close()
    assert_nothing_left(cluster)


def _scan_for(secret: bytes, stop: threading.Event, found: list[str]) -> None:
    """Every process's command line and environment on the machine (all hosts share one pid namespace)."""
    text = secret.decode()
    while not stop.is_set():
        for proc in psutil.process_iter():
            try:
                if text in "\0".join(proc.cmdline()):
                    found.append(f"cmdline of pid {proc.pid}")
                if any(text in value for value in proc.environ().values()):
                    found.append(f"environ of pid {proc.pid}")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        time.sleep(0.02)


def test_the_key_is_never_on_a_command_line_in_an_environment_a_log_or_a_readable_file(
    rik, cluster, jupyter_home: Path, tmp_path: Path
) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Secret", "--verbose")
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name)
    km.load_connection_file() if os.path.exists(km.connection_file) else None
    km.write_connection_file()
    secret = km.session.key
    assert len(secret) >= 32
    stop, found = threading.Event(), []
    scanner = threading.Thread(target=_scan_for, args=(secret, stop, found), daemon=True)
    scanner.start()
    log = tmp_path / "launcher.log"
    modes: list[str] = []

    def watch_files() -> None:
        while not stop.is_set():
            for d in Path("/tmp").glob("rik-*"):
                try:
                    if d.stat().st_uid == 1001:
                        modes.append(oct(d.stat().st_mode & 0o777))
                        for f in d.iterdir():
                            if f.is_file():
                                modes.append(oct(f.stat().st_mode & 0o777))
                except OSError:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_files, daemon=True)
    watcher.start()
    with open(log, "wb") as fh:
        km.start_kernel(stderr=fh)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive("import time; time.sleep(1); print('ok')", timeout=30)
            assert reply["content"]["status"] == "ok"
            km.interrupt_kernel()
        finally:
            kc.stop_channels()
            km.shutdown_kernel()
    stop.set()
    scanner.join()
    watcher.join()
    assert found == []
    text = log.read_bytes()
    assert b"starting kernel on rik-c1" in text  # the log was captured...
    assert secret not in text  # ...and never shows the key
    assert modes and set(modes) <= {"0o700", "0o600"}, modes
    assert_nothing_left(cluster)


@pytest.mark.parametrize("user", ["rikpw", "rikpp"])
def test_passwords_and_passphrases_go_through_askpass(rik, cluster, jupyter_home: Path, user: str) -> None:
    askpass = cluster.users[user].askpass
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-front", "-t", "rik-gw", "-n", f"Ask {user}", "--askpass", str(askpass), user=user)
    with started(name) as k:
        assert k.run("import getpass; print(getpass.getuser())").strip() == user
    assert_nothing_left(cluster, user)


def _launch_directly(spec_argv: list[str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"key": "k" * 32, "signature_scheme": "hmac-sha256", "transport": "tcp", "ip": "127.0.0.1",
                                "shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003, "control_port": 50004, "hb_port": 50005}))
    argv = [str(conn) if a == "{connection_file}" else a for a in spec_argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _spec_argv(jupyter_home: Path, name: str) -> list[str]:
    return json.loads((jupyter_home / "data" / "kernels" / name / "kernel.json").read_text())["argv"]


def test_a_wrong_password_fails_fast_with_one_clear_line(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-askpass"
    wrong.write_text("#!/bin/sh\necho not-the-password\n")
    wrong.chmod(0o700)
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-gw", "-n", "Wrong", "--askpass", str(wrong), user="rikpw")
    started_at = time.monotonic()
    result = _launch_directly(_spec_argv(jupyter_home, name), tmp_path)
    assert time.monotonic() - started_at < 30
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "authentication" in line]
    assert len(errors) == 1 and "rik-gw" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(cluster, "rikpw")


def test_an_unknown_host_key_fails_fast_naming_the_host(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text(cluster.ssh_config("rik").read_text().replace(str(cluster.known_hosts), str(empty)))
    result = rik("manage", "--add", "--ssh-config", str(config), "-k", PY, "-i", "ssh", "-x", "rik-gw", "-n", "Unknown", check=True)
    name = result.out.split("'")[1]
    started_at = time.monotonic()
    result = _launch_directly(_spec_argv(jupyter_home, name), tmp_path)
    assert time.monotonic() - started_at < 30 and result.returncode != 0
    assert "the host key of rik-gw is not known" in result.stderr, result.stderr
    assert "accept-new" in result.stderr
    assert_nothing_left(cluster)


def test_a_kernel_command_that_fails_is_reported_with_its_words(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Dies",
                      kernel_cmd="/usr/bin/python3 -c 'import nosuchmodule' {connection_file}")
    result = _launch_directly(_spec_argv(jupyter_home, name), tmp_path)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "exited with status 1 before it was ready" in line]
    assert len(errors) == 1 and "No module named 'nosuchmodule'" in errors[0], result.stderr
    assert_nothing_left(cluster)


def test_a_killed_tunnel_comes_back_and_the_kernel_keeps_its_state(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Tunnel")
    with started(name) as k:
        k.run("x = 'still here'")
        launcher = k.launcher_pid()
        tunnels = [p for p in _children(launcher) if " rik-tunnel " in p[1]]
        assert len(tunnels) == 1, tunnels  # one ssh process carries all five channels
        os.kill(tunnels[0][0], 9)
        wait_until(lambda: [p for p in _children(launcher) if " rik-tunnel " in p[1] and p[0] != tunnels[0][0]], 15, what="a new tunnel")
        assert k.run("print(x)", timeout=60).strip() == "still here"
    assert_nothing_left(cluster)


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append((child.pid, " ".join(child.cmdline())))
    return found


def _connections_to(address: str, port: int = 22) -> int:
    hexaddr = "".join(f"{int(o):02X}" for o in reversed(address.split(".")))
    needle = f"{hexaddr}:{port:04X} 01"
    with open("/proc/net/tcp") as fh:
        return sum(1 for line in fh if needle in line)


def test_kernels_on_one_host_share_one_authenticated_connection(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c2", *CHAIN, "-n", "Shared")
    gw = cluster.hosts["rik-gw"].address
    before = _connections_to(gw)  # connections other tests' kernels keep for reuse (ControlPersist)
    with started(name) as a, started(name) as b:
        assert a.run("import socket; print(socket.gethostname())").strip() == "rik-c2"
        assert b.run("import socket; print(socket.gethostname())").strip() == "rik-c2"
        # Everything goes through the gateway: at most one new TCP connection to it, shared by both kernels.
        assert _connections_to(gw) - before <= 1
    assert_nothing_left(cluster)


def _sshd_nodelay(cluster, host: str, user: str = "rik") -> list[bool]:
    """TCP_NODELAY of every connection ``user``'s sshd processes on ``host`` serve (sockets on port 22)."""
    found = []
    for proc in cluster.processes(host):
        if proc.user != user or not proc.cmdline.startswith("sshd:"):
            continue
        with contextlib.suppress(OSError):
            served = set()
            for line in Path(f"/proc/{proc.pid}/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(":0016") and fields[3] == "01":  # local port 22, established
                    served.add(fields[9])
            pidfd = os.pidfd_open(proc.pid)
            try:
                for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                    with contextlib.suppress(OSError):
                        link = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                        if not (link.startswith("socket:[") and link[8:-1] in served):
                            continue
                        mine = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
                        if mine < 0:
                            raise OSError(ctypes.get_errno(), "pidfd_getfd")
                        with socket.socket(fileno=mine) as sock:
                            found.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            finally:
                os.close(pidfd)
    return found


def test_every_hop_of_the_chain_passes_small_packets_at_once(rik, cluster, jupyter_home: Path) -> None:
    # sshd turns Nagle's algorithm off for a connection only when a session starts on it; a jump host's
    # connection carries only the next hop's, so rik starts a short session on it: without one every small
    # reply through the chain waits for a delayed ACK (44 ms).
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Nodelay")
    with started(name) as k:
        assert k.run("print(6 * 7)").strip() == "42"
        for host in ("rik-gw", "rik-front"):
            flags = _sshd_nodelay(cluster, host)
            assert flags, f"no connection of rik's to sshd on {host}"
            assert all(flags), f"a connection to sshd on {host} waits for delayed ACKs (TCP_NODELAY off)"
    assert_nothing_left(cluster)


def test_irkernel_with_remote_ikernels_documented_quoting(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "R", "-l", "R", kernel_cmd=IR)
    with started(name) as k:
        assert k.run('cat(Sys.info()[["nodename"]])').strip() == "rik-c1"
        assert k.run("cat(6 * 7)").strip() == "42"
        msg_id = k.kc.execute("cat('sleeping\\n'); Sys.sleep(60); cat('slept\\n')", stop_on_error=False)
        printed = k.wait_iopub(msg_id, lambda m: m["msg_type"] == "stream", 30, "the sleeping cell's output")
        assert printed["content"]["text"] == "sleeping\n"
        k.km.interrupt_kernel()
        reply = k.wait_reply(msg_id, 30)
        assert reply["content"]["status"] == "abort", reply["content"]  # IRkernel's answer to an interrupt (slept out: ok)
        assert k.run("cat('alive')").strip() == "alive"
    assert_nothing_left(cluster)


def test_sigterm_to_the_launcher_ends_everything_on_every_hop(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *CHAIN, "-n", "Term")
    with started(name) as k:
        assert user_processes(cluster, "rik", ("rik-c1",))
        os.kill(k.launcher_pid(), 15)
        wait_until(lambda: k.km.provisioner.process.poll() is not None, 10, what="the launcher to exit")
        assert_nothing_left(cluster, timeout=10)
