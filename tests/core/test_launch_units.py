"""The launcher's parts alone, no cluster and no root: the marker parser, the relay's reading of a shutdown
request, and the holder under a local ``sh`` (what keeps a job alive between connections)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest
from rik.launch.control import _ids, shutdown_kind
from rik.launch.holder import PRELOAD_MAX, client_command, render_attach, render_make
from rik.launch.protocol import parse_marker, split_lines
from rik.launch.session import Session


# -- the marker protocol ---------------------------------------------------------------------------------------
def test_markers_are_parsed_with_their_words_and_status() -> None:
    m = parse_marker("  RIK-NODE rik-c1 42 /tmp/rik-abc\r")
    assert m is not None and (m.kind, m.words) == ("NODE", ("rik-c1", "42", "/tmp/rik-abc"))
    exit_ = parse_marker("RIK-EXIT -9")
    assert exit_ is not None and exit_.status() == -9
    held = parse_marker("RIK-HELD-EXIT 3")
    assert held is not None and (held.kind, held.status()) == ("HELD-EXIT", 3)
    assert parse_marker("RIK-END") is not None and parse_marker("RIK-END").status() is None  # type: ignore[union-attr]


@pytest.mark.parametrize("line", ["", "hello RIK-NODE x", "RIK-NODES x", "rik-node x", "RIK-UNKNOWN 1"])
def test_other_lines_are_not_markers(line: str) -> None:
    assert parse_marker(line) is None


def test_lines_are_split_on_every_kind_of_line_end_and_the_rest_is_kept() -> None:
    lines, rest = split_lines(b"RIK-NO", b"DE a\r\nRIK-PID 1\rpart")
    assert (lines, rest) == (["RIK-NODE a", "RIK-PID 1"], b"part")


# -- the relay's reading of a shutdown request -----------------------------------------------------------------
def _message(msg_type: str, content: dict, key: bytes, *, sign_with: bytes | None = None) -> list[bytes]:
    header = json.dumps({"msg_id": "m1", "msg_type": msg_type}).encode()
    parts = [header, b"{}", b"{}", json.dumps(content).encode()]
    mac = hmac.new(sign_with if sign_with is not None else key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return [b"client-id", b"<IDS|MSG>", mac.hexdigest().encode(), *parts]


def test_a_signed_shutdown_request_says_shutdown_or_restart() -> None:
    key = b"k3y"
    assert shutdown_kind(_message("shutdown_request", {"restart": False}, key), key) == "shutdown"
    assert shutdown_kind(_message("shutdown_request", {"restart": True}, key), key) == "restart"
    assert shutdown_kind(_message("execute_request", {"code": "1"}, key), key) is None


def test_a_shutdown_request_signed_with_another_key_is_ignored() -> None:
    forged = _message("shutdown_request", {"restart": False}, b"k3y", sign_with=b"not-the-key")
    assert shutdown_kind(forged, b"k3y") is None
    assert shutdown_kind([b"no delimiter"], b"k3y") is None


def test_a_message_names_itself_and_its_parent() -> None:
    frames = _message("execute_request", {}, b"k")
    frames[4] = json.dumps({"msg_id": "parent-1"}).encode()  # the parent header
    assert _ids(frames) == ("m1", "parent-1")
    assert _ids([b"x"]) == (None, None)


# -- the holder, under a local sh ------------------------------------------------------------------------------
class _Reader:
    def __init__(self) -> None:
        self.data = b""

    def __call__(self, data: bytes) -> None:
        self.data += data


def _pump(session: Session, until, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; state {session.state}"
        fd = session.fd
        if fd is None:
            return
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready and not session.readable():
            return


def _held(tmp_path: Path, script: str) -> tuple[dict[str, str], _Reader, Session, Path]:
    """A holder made on this machine for a client running ``script``, with its first connection attached."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = _Reader()
    session = Session(lambda: ["/bin/sh", "-s"], env, out)
    session.make(client_command(["/bin/sh", "-c", script], tty=False), tty=False)
    _pump(session, lambda: session.state == "attached")
    return env, out, session, Path(session.hold_dir or "")


def test_the_holder_keeps_its_client_between_connections_and_ends_with_it(tmp_path: Path) -> None:
    env, out, session, hold = _held(tmp_path, "read a; echo got-$a; read b; echo got-$b; exit 3")
    assert stat.S_IMODE(hold.stat().st_mode) == 0o700 and stat.S_ISFIFO((hold / "in").stat().st_mode)
    assert session.write(b"one\n")
    _pump(session, lambda: b"got-one" in out.data)
    # The connection goes (as when the network changes): the client and its input stay.
    session.close()
    assert hold.is_dir()
    again = Session(lambda: ["/bin/sh", "-s"], env, out)
    again.hold_dir, again.offset = str(hold), session.offset
    again.attach()
    _pump(again, lambda: again.state == "attached")
    assert again.write(b"two\n")
    _pump(again, lambda: again.held_exit is not None)
    assert again.held_exit == 3
    assert out.data.count(b"got-one") == 1 and b"got-two" in out.data  # each byte exactly once
    again.close()
    deadline = time.monotonic() + 10
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not hold.exists()
    gone = Session(lambda: ["/bin/sh", "-s"], env, out)
    gone.hold_dir = str(hold)
    gone.attach()
    _pump(gone, lambda: gone.state in ("gone", "lost"))
    gone.close()
    assert gone.state == "gone"


def test_once_the_jobs_command_has_ended_the_holder_lets_go_of_its_input(tmp_path: Path) -> None:
    """A client that waits for the end of its input (qrsh) ends once the job's command said RIK-END and the
    connection closed; a connection that closes before then (a lost network) never ends the client's input."""
    env, out, session, hold = _held(tmp_path, "read a; echo RIK-END 0; cat >/dev/null; echo input-ended")
    session.close()  # lost before the end: the client keeps its input
    time.sleep(0.5)
    assert hold.is_dir() and b"input-ended" not in (hold / "out").read_bytes()
    again = Session(lambda: ["/bin/sh", "-s"], env, out)
    again.hold_dir, again.offset = str(hold), session.offset
    again.attach()
    _pump(again, lambda: again.state == "attached")
    assert again.write(b"go\n")
    _pump(again, lambda: b"RIK-END" in out.data)
    again.close()  # the launcher's end after RIK-END
    deadline = time.monotonic() + 10
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hold.exists(), "the client never saw the end of its input"


def test_the_first_connection_carries_the_jobs_first_input_ahead_of_what_it_sends_later(tmp_path: Path) -> None:
    """The bootstrap goes with the script that makes the holder (no round trip): into the fifo, ahead of anything
    the connection writes, quotes and newlines intact, written by a builtin (never a program's argument)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = _Reader()
    session = Session(lambda: ["/bin/sh", "-s"], env, out)
    # Like the bootstrap: one function and its call, so the shell has read all of it before it runs and reads
    # what comes next with the builtin `read`.
    first = """f() {\necho "first:'quoted' }{"\nwhile read -r a; do echo "got:$a"; [ "$a" = end ] && exit 4; done\n}\nf\n"""
    client = client_command(["/bin/sh", "-s"], tty=False)
    assert session.make(client, tty=False, preload=first)
    assert not session.write(b"early\n")  # not attached yet: refused, as before
    _pump(session, lambda: b"first:'quoted' }{" in out.data)  # the preload ran with nothing sent after it
    assert session.write(b"one\nend\n")
    _pump(session, lambda: session.held_exit is not None)
    assert session.held_exit == 4 and b"got:one\ngot:end" in out.data
    session.close()
    big = "#" * (PRELOAD_MAX + 1)
    assert "printf" not in render_make(client, tty=False, preload=big)
    too_big = Session(lambda: ["/bin/true"], env, out)
    assert not too_big.make(client, tty=False, preload=big)  # the launcher sends it once attached instead
    too_big.close()


def test_a_terminal_client_runs_under_script_with_echo_off() -> None:
    command = client_command(["qsub", "-I", "-N", "my job"], tty=True)
    assert command.startswith("exec script -qfec ") and "stty -echo" in command and "'my job'" in command
    script = render_make(command, tty=True)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert subprocess.run(["sh", "-n"], input=render_attach("/tmp/rik-h-x", 10), text=True).returncode == 0
    assert "tail -c +11 -f" in render_attach("/tmp/rik-h-x", 10)


def test_only_a_plain_local_kernelspec_takes_the_exec_path(tmp_path, monkeypatch) -> None:
    from rik.launch.here import _command, _plain

    conn = tmp_path / "kernel-1.json"
    conn.write_text('{"key": "k"}')
    local = json.dumps({"v": 1, "interface": "local", "kernel_cmd": "python3 -m ipykernel_launcher -f {connection_file}", "name": "L", "language": "python"})
    config, path = _plain(["--kernel-config", local, "-f", str(conn)])
    assert path == str(conn) and _command(config, path) == ["python3", "-m", "ipykernel_launcher", "-f", str(conn)]
    assert _plain(["--kernel-config", local, str(conn)]) is not None
    # Anything else is the full launcher's: VS Code's flags, a remote or unknown setting, a newer config, debug logs,
    # a connection file Jupyter named but never wrote.
    assert _plain(["--kernel-config", local, "-f", str(conn), "--ip=127.0.0.1"]) is None
    for change in ({"host": "node"}, {"v": 2}, {"verbose": True}, {"interface": "slurm"}, {"workdir": 3}):
        assert _plain(["--kernel-config", json.dumps({**json.loads(local), **change}), str(conn)]) is None, change
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert _plain(["--kernel-config", local, str(empty)]) is None
    assert _plain(["--kernel-config", local, str(tmp_path / "missing.json")]) is None
    # A pre-command runs in the user's login shell first (csh-family shells take no -l with -c).
    pre = {**json.loads(local), "precmd": "module load python"}
    monkeypatch.setenv("SHELL", "/bin/bash")
    assert _command(pre, "/c.json") == ["/bin/bash", "-l", "-c", "module load python\nexec python3 -m ipykernel_launcher -f /c.json"]
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    assert _command(pre, "/c.json")[:2] == ["/bin/tcsh", "-c"]
