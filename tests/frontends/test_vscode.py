"""VS Code runs a kernelspec's argv itself (it ignores provisioners) and rewrites Python kernels' argv: these tests
run rik's kernelspecs the ways its releases do, then drive the kernel with jupyter_client on the ports VS Code chose.

- *current*: ``{connection_file}`` replaced by a file VS Code wrote, nothing appended;
- *flags*: the same, plus ``--ip= --stdin= --control= --hb= --Session.signature_scheme="..." --Session.key=b"..."
  --shell= --transport="tcp" --iopub= --f=FILE`` appended (quotes inside the argv words);
- *older*: the word before ``{connection_file}`` and ``{connection_file}`` removed, the flags appended, ``--f=`` a
  name VS Code never wrote (why rik's argv has ``-f`` before ``{connection_file}``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from frontend_helpers import kernelspec
from helpers import add_kernel, assert_nothing_left
from jupyter_client.blocking.client import BlockingKernelClient
from kernels import Kernel, wait_until
from rik.errors import RikError
from rik.launcher import parse_args

CONFIG = json.dumps({"interface": "local", "kernel_cmd": "python3 -m ipykernel_launcher -f {connection_file}",
                     "name": "Code", "language": "python", "v": 1})
FORMS = ("current", "flags", "older")


def _free_ports(n: int = 5) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _connection() -> dict:
    names = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    return {**dict(zip(names, _free_ports(), strict=True)), "ip": "127.0.0.1", "key": str(uuid.uuid4()),
            "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": ""}


def _flags(c: dict, connection_file: str) -> list[str]:
    """What VS Code appends to a Python kernel's argv (its own quoting, inside the words)."""
    return [f"--ip={c['ip']}", f"--stdin={c['stdin_port']}", f"--control={c['control_port']}", f"--hb={c['hb_port']}",
            f'--Session.signature_scheme="{c["signature_scheme"]}"', f'--Session.key=b"{c["key"]}"',
            f"--shell={c['shell_port']}", f'--transport="{c["transport"]}"', f"--iopub={c['iopub_port']}",
            f"--f={connection_file}"]


def vscode_argv(spec: dict, form: str, connection: dict, runtime: Path) -> list[str]:
    argv = list(spec["argv"])
    index = argv.index("{connection_file}")
    written = runtime / f"kernel-v2-{os.getpid()}{uuid.uuid4().hex[:8]}.json"
    if form == "older":
        del argv[index - 1 : index + 1]
        return argv + _flags(connection, str(runtime / f"never-written-{uuid.uuid4().hex[:8]}.json"))
    written.write_text(json.dumps(connection))
    argv[index] = str(written)
    return argv + (_flags(connection, str(written)) if form == "flags" else [])


# ------------------------------------------------------------------ the launcher's command line
def test_parse_args_takes_vscodes_flags_over_the_file_and_unquotes_them(tmp_path: Path) -> None:
    stale = {**_connection(), "key": "old", "transport": "ipc"}
    fresh = _connection()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(stale))
    _, got_path, got = parse_args(["--kernel-config", CONFIG, "-f", str(path), *_flags(fresh, str(path))])
    assert got_path == str(path)
    assert {k: got[k] for k in fresh if k != "kernel_name"} == {k: v for k, v in fresh.items() if k != "kernel_name"}


def test_parse_args_rebuilds_a_connection_file_vscode_never_wrote(tmp_path: Path) -> None:
    c = _connection()
    path = tmp_path / "never.json"
    _, got_path, got = parse_args(["--kernel-config", CONFIG, *_flags(c, f'"{path}"')])
    assert got_path == str(path) and got["key"] == c["key"] and got["shell_port"] == c["shell_port"]
    assert json.loads(path.read_text())["hb_port"] == c["hb_port"]  # for a kernel that reads this very file
    assert path.stat().st_mode & 0o077 == 0


def test_parse_args_with_f_and_no_file_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(["--kernel-config", CONFIG, "-f"])
    assert exit.value.code == 2
    assert "argument -f: expected one argument" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--shell=12"]], ids=["nothing", "incomplete"])
def test_parse_args_without_a_usable_connection_says_so(argv: list[str], tmp_path: Path) -> None:
    """A missing file, and flags too few to rebuild the connection from: the file is needed, and named."""
    missing = tmp_path / "none.json"
    with pytest.raises(RikError, match=f"cannot read the connection file {missing}"):
        parse_args(["--kernel-config", CONFIG, *argv, str(missing)])
    assert not missing.exists()


# ------------------------------------------------------------------ kernels run as VS Code runs them
def _drive(spec: dict, form: str, tmp_path: Path) -> str:
    """Start the kernel as VS Code does, run a cell, interrupt a sleep, shut it down; the cell's output."""
    assert os.path.isfile(spec["argv"][0]) and os.access(spec["argv"][0], os.X_OK)  # VS Code hides specs otherwise
    assert spec["argv"].count("{connection_file}") == 1
    connection = _connection()
    argv = vscode_argv(spec, form, connection, tmp_path)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    # Like VS Code: wait until the shell and IOPub ports are listened on, then connect.
    wait_until(lambda: proc.poll() is not None or all(_listening(connection[k]) for k in ("shell_port", "iopub_port")),
               90, what="the kernel's ports")
    assert proc.poll() is None, f"the launcher exited with status {proc.returncode}"
    kc = BlockingKernelClient()
    kc.load_connection_info(connection)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=90)
        kernel = Kernel(km=_Interrupter(spec["interrupt_mode"], proc, kc), kc=kc)  # type: ignore[arg-type]
        out = kernel.run("import socket; print(socket.gethostname())").strip()
        kernel.run("x = 41")
        assert kernel.interrupt_sleep() == "KeyboardInterrupt"
        assert kernel.run("print(x + 1)").strip() == "42"
        kc.shutdown()  # shutdown_request on the control channel, as VS Code sends it
        assert proc.wait(timeout=60) == 0
        return out
    finally:
        kc.stop_channels()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Interrupter:
    """What VS Code does on the interrupt button: SIGINT to the process, or interrupt_request by message."""

    def __init__(self, mode: str, proc: subprocess.Popen, kc: BlockingKernelClient) -> None:
        self.mode, self.proc, self.kc = mode, proc, kc

    def interrupt_kernel(self) -> None:
        if self.mode == "signal":
            os.kill(self.proc.pid, signal.SIGINT)
        else:
            self.kc.control_channel.send(self.kc.session.msg("interrupt_request", {}))


@pytest.mark.parametrize("form", FORMS)
def test_a_local_kernel_run_as_vscode_runs_it(rik, jupyter_home: Path, tmp_path: Path, form: str) -> None:
    rik("manage", "--add", "-i", "local", "-n", "Code", check=True)
    assert _drive(kernelspec(jupyter_home, "rik_local_code"), form, tmp_path) == socket.gethostname()


@pytest.mark.parametrize("form", FORMS)
def test_an_ssh_chain_kernel_run_as_vscode_runs_it(rik, cluster, jupyter_home: Path, tmp_path: Path, form: str) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front", "-n", "Code",
                      "--interrupt-mode", "signal")
    assert _drive(kernelspec(jupyter_home, name), form, tmp_path) == "rik-c1"
    assert_nothing_left(cluster)
