"""The security-critical paths without root and without a cluster: the kernel's bootstrap run by a local ``sh``
(the key only in a 0600 file inside a 0700 directory, the file gone once the kernel has read it, everything gone
when rik goes away), the ssh argv and the config file rik gives ssh, and the one-line explanations of ssh's
failures. tests/integration proves the same on the real hosts; these run everywhere, in seconds."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
from rik import bootstrap
from rik.config import parse_endpoint
from rik.errors import UsageError
from rik.ssh import SSHSettings, SSHTransport, explain_ssh_failure

KEY = "5ecret-" + "9f" * 20  # what the HMAC key looks like to the bootstrap: any string

# A kernel that reports what it was given (its connection file's mode, its directory's mode, what the file said,
# its own argv and environment), binds the endpoints the file names, and runs until it is ended.
FAKE_KERNEL = r"""
import json, os, signal, socket, stat, sys, time
path = sys.argv[1]
info = json.load(open(path))
seen = {
    "path": path,
    "file_mode": stat.S_IMODE(os.stat(path).st_mode),
    "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),
    "connection": info,
}
socks = []
for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
    if info["transport"] == "ipc":
        s = socket.socket(socket.AF_UNIX)
        s.bind(f"{info['ip']}-{info[name]}")
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", info[name]))
    s.listen()
    socks.append(s)
with open(os.environ["RIK_TEST_REPORT"] + ".tmp", "w") as fh:
    json.dump(seen, fh)
os.rename(os.environ["RIK_TEST_REPORT"] + ".tmp", os.environ["RIK_TEST_REPORT"])
while True:
    time.sleep(0.05)
"""


class Bootstrapped:
    """A bootstrap running under a local ``/bin/sh -s``, its output read line by line."""

    def __init__(self, proc: subprocess.Popen[bytes], report: Path) -> None:
        self.proc, self.report, self.lines, self._buffer = proc, report, [], b""

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                self._buffer += chunk
                *done, self._buffer = self._buffer.split(b"\n")
                self.lines += [line.decode() for line in done]
        raise AssertionError(f"no {prefix} line from the bootstrap: {self.lines}")

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())
        self.proc.stdin.flush()

    def seen(self) -> dict:
        return json.loads(self.report.read_text())

    def private_dir(self) -> Path:
        return Path(self.wait_for("RIK-NODE").split()[-1])


@contextmanager
def bootstrapped(tmp_path: Path, mode: str) -> Iterator[Bootstrapped]:
    fake = tmp_path / "fake_kernel.py"
    fake.write_text(FAKE_KERNEL)
    base = Path("/tmp") / f"rkb{os.getpid()}{mode}"  # short: Unix socket paths are limited to ~107 bytes
    base.mkdir(mode=0o700, exist_ok=True)
    report = tmp_path / "seen.json"
    ports = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
    spec = bootstrap.Bootstrap(
        connection={"key": KEY, "signature_scheme": "hmac-sha256", "transport": "tcp", "ip": "127.0.0.1", **ports},
        kernel_argv=[sys.executable, str(fake), "{connection_file}"],
        mode=mode,
        workdir=str(tmp_path),
        grace=600,
    )
    env = {**os.environ, "TMPDIR": str(base), "SHELL": "/bin/sh", "RIK_TEST_REPORT": str(report)}
    proc = subprocess.Popen(
        ["/bin/sh", "-s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(bootstrap.render(spec).encode())
    proc.stdin.flush()
    run = Bootstrapped(proc, report)
    try:
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                with suppress(BrokenPipeError):
                    stream.close()
        for leftover in base.glob("rik-*"):
            subprocess.run(["rm", "-rf", str(leftover)], check=False)
        base.rmdir()


def processes_holding(secret: str, ancestor: int) -> list[str]:
    """Processes under ``ancestor`` (the bootstrap's shell) with ``secret`` in their argv or environment."""
    found = []
    try:
        tree = [psutil.Process(ancestor), *psutil.Process(ancestor).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for proc in tree:
        try:
            if secret in " ".join(proc.cmdline()) or any(secret in v for v in proc.environ().values()):
                found.append(f"{proc.pid} {proc.cmdline()}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


# ------------------------------------------------------------------ the bootstrap, under a local sh
def test_the_key_is_only_in_shell_variables_and_the_builtin_printf() -> None:
    """No line that holds the key runs a program: it is a variable assignment or ``printf`` (a builtin of every
    POSIX sh), so the key never reaches an argv."""
    for mode in ("ipc", "tcp"):
        script = bootstrap.render(
            bootstrap.Bootstrap(connection={"key": KEY}, kernel_argv=["k", "{connection_file}"], mode=mode)
        )
        holding = [line.strip() for line in script.splitlines() if KEY in line]
        assert holding, mode
        assert all(re.match(r"(?:[a-z_]+=\S+$|printf )", line) for line in holding), holding


@pytest.mark.parametrize("mode", ["ipc", "tcp"])
def test_the_key_lives_only_in_a_0600_file_in_a_0700_directory_until_the_kernel_has_read_it(
    tmp_path: Path, mode: str
) -> None:
    with bootstrapped(tmp_path, mode) as run:
        private = run.private_dir()
        ready = run.wait_for("RIK-READY")
        seen = run.seen()
        assert seen["connection"]["key"] == KEY
        assert seen["file_mode"] == 0o600 and seen["dir_mode"] == 0o700
        assert Path(seen["path"]).parent == private
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        # Ready: the kernel has bound its endpoints, and the file with the key is gone.
        assert not Path(seen["path"]).exists()
        assert KEY not in "".join(p.read_text(errors="replace") for p in private.rglob("*") if p.is_file())
        assert processes_holding(KEY, run.proc.pid) == []
        if mode == "ipc":
            assert ready.split()[1:] == ["ipc", f"{private}/k"]
            assert seen["connection"]["ip"] == f"{private}/k"
        else:
            ports = [int(p) for p in ready.split()[2:]]
            assert ports == [seen["connection"][k] for k in bootstrap.CHANNELS]
            assert all(30000 <= p < 60000 for p in ports) and len(set(ports)) == 5
        assert KEY not in "\n".join(run.lines)  # nor in anything it printed


@pytest.mark.parametrize("mode", ["ipc", "tcp"])
def test_when_rik_goes_away_the_private_directory_goes_too(tmp_path: Path, mode: str) -> None:
    """rik gone means its end of the bootstrap's output is gone: the next write raises SIGPIPE, whose trap removes
    the private directory."""
    with bootstrapped(tmp_path, mode) as run:
        private = run.private_dir()
        run.wait_for("RIK-READY")
        kernel = psutil.Process(int(run.wait_for("RIK-PID").split()[1]))
        assert run.proc.stdout is not None
        run.proc.stdout.close()  # rik's end of the output
        kernel.kill()  # the bootstrap has something to say about it, to nobody
        assert run.proc.wait(20) == 141  # the SIGPIPE trap's own status: it ran
        assert not private.exists()


@pytest.mark.parametrize("mode", ["ipc", "tcp"])
def test_a_kernel_that_ends_on_its_own_parks_the_job_and_after_end_the_job_ends_with_it(tmp_path: Path, mode: str) -> None:
    """A kernel that exits by itself (a restart, a crash) leaves the job waiting for `start`; once the frontend asked
    for a shutdown (`end`), the kernel's exit ends the job at once, and the private directory goes."""
    with bootstrapped(tmp_path, mode) as run:
        private = run.private_dir()
        run.wait_for("RIK-READY")
        psutil.Process(int(run.wait_for("RIK-PID").split()[1])).kill()
        run.wait_for("RIK-EXIT")
        assert run.proc.poll() is None and private.exists()  # parked
        run.send("start")
        run.send(KEY)
        run.wait_for("RIK-RESTART")
        run.lines.clear()
        run.wait_for("RIK-READY")
        kernel = psutil.Process(int(run.wait_for("RIK-PID").split()[1]))
        run.send("end")
        deadline = time.monotonic() + 20
        while not (private / "stop").exists() and time.monotonic() < deadline:  # the word is read before the kernel goes
            time.sleep(0.02)
        kernel.kill()
        assert run.wait_for("RIK-END")
        assert not [line for line in run.lines if line.startswith("RIK-EXIT")], run.lines
        assert run.proc.wait(20) != 0 and not private.exists()


# ------------------------------------------------------------------ ssh: the argv and the config file
@pytest.fixture
def transport_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    runtime = Path("/tmp") / f"rks{os.getpid()}"
    monkeypatch.setenv("RIK_RUNTIME_DIR", str(runtime))
    for name in ("RIK_ASKPASS", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"):
        monkeypatch.delenv(name, raising=False)
    yield home
    subprocess.run(["rm", "-rf", str(runtime)], check=False)


def test_rik_s_ssh_config_is_private_checks_host_keys_and_includes_the_user_s_own(transport_env: Path) -> None:
    user_config = transport_env / "kernel.conf"
    user_config.write_text("Host *\n  User alice\n")
    (transport_env / ".ssh" / "config").write_text("")
    transport = SSHTransport(SSHSettings(ssh_config=str(user_config)))
    path = transport.config_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and path.parent.stat().st_uid == os.getuid()
    lines = path.read_text().splitlines()
    assert "StrictHostKeyChecking yes" in lines and "BatchMode yes" in lines
    assert f"ControlPath {path.parent}/cm-%C" in lines and "ControlMaster auto" in lines
    includes = [line for line in lines if line.startswith("Include")]
    assert includes[:2] == [f'Include "{user_config.resolve()}"', f'Include "{transport_env}/.ssh/config"']
    # ssh keeps the first value it reads: rik's own settings come before anything included.
    assert lines.index("StrictHostKeyChecking yes") < lines.index(includes[0])
    # The jump processes read the file: hops' masters persist briefly; a command's own host gets the full time.
    assert "ControlPersist 3" in lines


def test_trust_on_first_use_and_askpass_only_when_asked(transport_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = SSHTransport(SSHSettings(host_keys="accept-new", askpass="/usr/bin/my-askpass"))
    lines = transport.config_path.read_text().splitlines()
    assert "StrictHostKeyChecking accept-new" in lines and "BatchMode yes" not in lines
    env = transport.env()
    assert (env["SSH_ASKPASS"], env["SSH_ASKPASS_REQUIRE"]) == ("/usr/bin/my-askpass", "force")
    monkeypatch.setenv("RIK_ASKPASS", "/usr/bin/site-askpass")
    assert SSHTransport(SSHSettings()).env()["SSH_ASKPASS"] == "/usr/bin/site-askpass"
    monkeypatch.delenv("RIK_ASKPASS")
    monkeypatch.setenv("SSH_ASKPASS", "/usr/bin/x-askpass")  # without SSH_ASKPASS_REQUIRE=force: not used
    assert SSHTransport(SSHSettings()).askpass_program() is None


def test_a_missing_kernel_ssh_config_is_refused(transport_env: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        SSHTransport(SSHSettings(ssh_config=str(transport_env / "nope.conf")))


def test_a_remote_command_is_one_quoted_word_after_the_host_and_options_cannot_be_smuggled_in(
    transport_env: Path,
) -> None:
    transport = SSHTransport(SSHSettings())
    target = parse_endpoint("alice@node01:2222")
    chain = (parse_endpoint("gw"), parse_endpoint("bob@login:22"))
    argv = transport.command(target, chain, ["/bin/sh", "-c", "echo $HOME; rm x"], tty=False)
    # No master is up: the ssh command comes after rik.sshlogin, which logs in first, once per host.
    assert argv[argv.index("-I") + 2].endswith("sshlogin.py")
    spec = json.loads(argv[argv.index("-I") + 3])
    assert {"-N", "-f"} <= set(spec["login"]) and spec["login"][-6:] == [
        "-J",
        "gw,bob@login:22",
        "-p",
        "2222",
        "--",
        "alice@node01",
    ]
    assert len(spec["locks"]) == 3  # one per host of the route
    argv = argv[argv.index(transport.program) :]
    assert argv[:3] == [transport.program, "-F", str(transport.config_path)] and argv[3] == "-T"
    assert argv[argv.index("-J") + 1] == "gw,bob@login:22" and argv[argv.index("-p") + 1] == "2222"
    host_at = argv.index("--") + 1
    assert argv[host_at] == "alice@node01"  # after "--": a host can never be read as an option
    assert argv[host_at + 1 :] == [shlex.join(["/bin/sh", "-c", "echo $HOME; rm x"])]
    assert shlex.split(argv[-1]) == ["/bin/sh", "-c", "echo $HOME; rm x"]
    assert "-tt" in transport.command(target, (), ["true"], tty=True)
    assert "ControlPersist=60" in argv and "ControlPersist=60" not in transport.command(
        target, chain, [], persist=False
    )
    with pytest.raises(UsageError):
        parse_endpoint("-oProxyCommand=evil")


def test_tunnels_bind_loopback_only_and_fail_rather_than_forward_half(transport_env: Path) -> None:
    transport = SSHTransport(SSHSettings())
    argv = transport.tunnel(parse_endpoint("node01"), (), [(51001, "/tmp/rik-x/k-1"), (51002, "127.0.0.1:40000")])
    argv = argv[argv.index(transport.program) :]
    forwards = [argv[i + 1] for i, word in enumerate(argv) if word == "-L"]
    assert forwards == ["127.0.0.1:51001:/tmp/rik-x/k-1", "127.0.0.1:51002:127.0.0.1:40000"]
    assert "ExitOnForwardFailure=yes" in argv
    # A client of the host's master that can never log in itself.
    assert argv[:3] == [transport.program, "-F", str(transport.config_path)] and "ProxyCommand=false" in argv


def test_the_runtime_directory_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rik.ssh import runtime_dir

    loose = Path("/tmp") / f"rkl{os.getpid()}"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    try:
        monkeypatch.setenv("RIK_RUNTIME_DIR", str(loose))
        assert runtime_dir() == loose
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    finally:
        loose.rmdir()


# ------------------------------------------------------------------ ssh's failures, in one line
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@\n"
            "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nHost key for node01 has changed and you have "
            "requested strict checking.\nHost key verification failed.\n",
            "the host key of node01 has CHANGED",
        ),
        (
            "No ED25519 host key is known for node01 and you have requested strict checking.\n"
            "Host key verification failed.\n",
            "the host key of node01 is not known",
        ),
        ("ssh: Could not resolve hostname nosuch: Name or service not known\n", "cannot resolve host name nosuch"),
        (
            "ssh: connect to host 10.0.0.9 port 22: Connection refused\n",
            "cannot reach 10.0.0.9 port 22: Connection refused",
        ),
        (
            "alice@node01: Permission denied (publickey,password).\n",
            "authentication to alice@node01 failed (publickey,password)",
        ),
        ("channel 0: open failed: administratively prohibited: open failed\n", "port forwarding is disabled"),
    ],
)
def test_ssh_failures_are_explained_in_one_line(output: str, expected: str) -> None:
    explained = explain_ssh_failure(output)
    assert explained is not None and explained.startswith(expected), explained
    assert "\n" not in explained


def test_an_unknown_failure_is_not_explained() -> None:
    assert explain_ssh_failure("kex_exchange_identification: read: Connection reset by peer\n") is None
    assert explain_ssh_failure("") is None


# ------------------------------------------------------------------ what the remote side prints for rik
def test_markers_are_read_from_whole_lines_only() -> None:
    from rik.launch.protocol import parse_marker

    node = parse_marker("RIK-NODE rik-c1 42 /tmp/rik-AbC\r")
    assert node is not None and (node.kind, node.words) == ("NODE", ("rik-c1", "42", "/tmp/rik-AbC"))
    assert parse_marker("  RIK-READY ipc /tmp/rik-AbC/k ").words == ("ipc", "/tmp/rik-AbC/k")  # type: ignore[union-attr]
    assert parse_marker("RIK-EXIT -9").status() == -9  # type: ignore[union-attr]
    assert parse_marker("RIK-HELD-EXIT 0").kind == "HELD-EXIT"  # type: ignore[union-attr]
    assert parse_marker("RIK-END").status() is None  # type: ignore[union-attr]
    # What a kernel or a login shell prints is never taken for a marker.
    for line in ("echo RIK-READY tcp 1 2 3 4 5", "RIK-READYX", "RIK-NODEhost", "rik-ready ipc /x", "xRIK-PID 7", ""):
        assert parse_marker(line) is None, line


def test_output_is_split_into_lines_whatever_the_chunks() -> None:
    from rik.launch.protocol import split_lines

    data = b"RIK-NODE n1 /tmp/rik-x\r\nRIK-WOR"
    lines, rest = split_lines(b"", data)
    assert (lines, rest) == (["RIK-NODE n1 /tmp/rik-x"], b"RIK-WOR")
    lines, rest = split_lines(rest, b"KDIR /home/u\rRIK-PID 7\n")
    assert (lines, rest) == (["RIK-WORKDIR /home/u", "RIK-PID 7"], b"")


# ------------------------------------------------------------------ where the tunnel goes
def test_the_tunnel_goes_to_the_host_itself_or_to_the_node_through_the_submit_host() -> None:
    from rik.launch.launcher import kernel_route

    gw, login = parse_endpoint("gw"), parse_endpoint("alice@login:2222")
    assert kernel_route(False, login, (gw,), None) == (login, (gw,))  # plain SSH: the host is the kernel's
    node, hops = kernel_route(True, login, (gw,), "c17")
    assert (node.host, hops) == ("c17", (gw, login))  # a job: its node, through the chain and the submit host
    assert kernel_route(True, login, (gw,), "alice@login") == (login, (gw,))  # the job landed on the submit host
    node, hops = kernel_route(True, None, (), "c17")  # submitted on this machine
    assert (node.host, hops) == ("c17", ())
    with pytest.raises(UsageError):
        kernel_route(True, login, (), "-oProxyCommand=evil")  # a node name is never an ssh option


# ------------------------------------------------------------------ the state file
def test_a_kernel_s_record_is_private_and_holds_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rik import state

    monkeypatch.setenv("RIK_STATE_DIR", str(tmp_path / "state"))
    runtime = Path("/tmp") / f"rkr{os.getpid()}"
    monkeypatch.setenv("RIK_RUNTIME_DIR", str(runtime))
    try:
        record = state.KernelState(
            name="kernel-1",
            launcher_pid=os.getpid(),
            config={"interface": "ssh"},
            connection_file="/run/kernel-1.json",
            job_id="42",
        )
        record.save()
        record.save_key(KEY)
        assert record.path is not None and record.path.parent == tmp_path / "state"
        assert stat.S_IMODE(record.path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(record.path.stat().st_mode) == 0o600
        assert KEY not in record.path.read_text()
        key_file = state.key_path("kernel-1")
        assert key_file.parent == runtime and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert record.key() == KEY
        assert [p.name for p in record.path.parent.iterdir()] == ["kernel-1.json"]  # nothing half-written left
        loaded = state.load(record.path)
        assert loaded is not None and (loaded.job_id, loaded.config) == ("42", {"interface": "ssh"})
        # A record from a newer rik (a field this one does not know) still loads; a broken one is skipped.
        data = json.loads(record.path.read_text())
        record.path.write_text(json.dumps({**data, "from_the_future": 1}))
        (record.path.parent / "broken.json").write_text("{not json")
        assert [r.name for r in state.load_all()] == ["kernel-1"]
        record.remove()
        assert not record.path.exists() and not key_file.exists()
    finally:
        subprocess.run(["rm", "-rf", str(runtime)], check=False)


def test_the_early_session_is_taken_over_only_for_the_settings_it_was_started_from(transport_env: Path) -> None:
    """rik.launch.early reads the raw --kernel-config; the launcher holds what it read against the full config."""
    from rik.config import KernelConfig
    from rik.launch.early import basis, start

    def full(text: str) -> tuple[object, ...]:
        c = KernelConfig.loads(text)
        return basis(c.host, c.tunnel_hosts, c.ssh_config, c.host_keys, c.askpass)

    kernel = {"v": 1, "interface": "ssh", "kernel_cmd": "python3 -m ipykernel_launcher -f {connection_file}", "name": "N"}
    for extra in ({"host": "alice@node01:2222"}, {"host": "n", "tunnel_hosts": ["gw", "bob@login:22"], "host_keys": "accept-new"}):
        text = json.dumps({**kernel, **extra})
        early = start(["--kernel-config", text, "-f", "/nonexistent/kernel.json"])
        assert early is not None and early.proc is None  # no master up: nothing started, the launcher logs in
        assert early.basis == full(text)
    # No host (a local kernel), or a config this path does not read: nothing at all.
    assert start(["--kernel-config", json.dumps({**kernel, "interface": "local"})]) is None
    assert start(["--kernel-config", json.dumps({**kernel, "host": "n", "v": 2})]) is None
    assert start(["--kernel-config", "{not json"]) is None
    assert start(["--kernel-config", json.dumps({**kernel, "host": "-oProxyCommand=x"})]) is None
