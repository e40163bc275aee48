"""A real ipykernel from another virtual environment, through a kernelspec `rik manage` wrote, driven by
jupyter_client's KernelManager: execute, interrupt, restart, shut down, and nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from kernels import pid_alive, processes_mentioning, started, wait_until


@pytest.fixture(scope="session")
def other_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another virtual environment with ipykernel and nothing of rik."""
    path = tmp_path_factory.mktemp("otherenv")
    venv.create(path, with_pip=True)
    subprocess.run(
        [path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "ipykernel"],
        check=True,
        timeout=600,
    )
    return path


def test_local_kernel_end_to_end(rik, jupyter_home: Path, other_env: Path) -> None:
    python = other_env / "bin" / "python"
    rik("manage", "--add", "-i", "local", "-n", "Other", "-k", f"{python} -m ipykernel_launcher -f {{connection_file}}", check=True)
    with started("rik_local_other") as k:
        assert k.run("import sys; print(sys.prefix)").strip() == str(other_env)
        assert "rik" not in k.run("import importlib.util as u; print(u.find_spec('rik'))")
        kernel_pid = int(k.run("import os; print(os.getpid())"))
        launcher = k.launcher_pid()
        assert launcher and pid_alive(launcher) and pid_alive(kernel_pid)
        k.run("x = 41")
        assert k.interrupt_sleep(again=True) == "KeyboardInterrupt"  # message mode: straight to ipykernel
        assert k.run("print(x + 1)").strip() == "42"  # the kernel survived the interrupt
        k.restart()
        assert k.run("print('x' in globals())").strip() == "False"
        assert not pid_alive(kernel_pid)
        kernel_pid = int(k.run("import os; print(os.getpid())"))
        launcher = k.launcher_pid()
        connection_file = k.km.connection_file
    wait_until(lambda: not pid_alive(kernel_pid) and not pid_alive(launcher), 10, what="kernel and launcher to end")
    assert processes_mentioning(connection_file) == []


def test_signal_mode_interrupt_reaches_the_kernel_through_the_launcher(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Sig", "--interrupt-mode", "signal", check=True)
    spec = json.loads((jupyter_home / "data" / "kernels" / "rik_local_sig" / "kernel.json").read_text())
    assert spec["interrupt_mode"] == "signal"
    with started("rik_local_sig") as k:
        assert k.interrupt_sleep() == "KeyboardInterrupt"
        assert k.run("print(1 + 1)").strip() == "2"


def test_launcher_resets_inherited_ignored_signals(rik, jupyter_home: Path) -> None:
    """Jupyter started under nohup, or from a script in the background, passes SIGINT/SIGHUP "ignored" on."""
    rik("manage", "--add", "-n", "Nohup", "--interrupt-mode", "signal", check=True)
    old_int, old_hup = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with started("rik_local_nohup") as k:
            assert k.interrupt_sleep() == "KeyboardInterrupt"
            launcher = k.launcher_pid()
            kernel_pid = int(k.run("import os; print(os.getpid())"))
            os.kill(launcher, signal.SIGHUP)  # a hang-up is a clean shutdown
            wait_until(lambda: not pid_alive(kernel_pid), 10, what="kernel to end after SIGHUP")
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGHUP, old_hup)


def test_kill_9_of_the_launcher_leaves_no_kernel_after_the_grace_period(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Orphan", "--grace", "1", check=True)
    with started("rik_local_orphan") as k:
        kernel_pid = int(k.run("import os; print(os.getpid())"))
        os.kill(k.launcher_pid(), signal.SIGKILL)
        wait_until(lambda: not pid_alive(kernel_pid), 15, what="the watchdog to end the kernel")


def test_a_kernel_command_that_fails_is_reported_quickly_with_its_output(rik, jupyter_home: Path, tmp_path: Path) -> None:
    rik("manage", "--add", "-n", "Broken", "-k", f"{sys.executable} -c 'import nosuchmodule' {{connection_file}}", check=True)
    spec = json.loads((jupyter_home / "data" / "kernels" / "rik_local_broken" / "kernel.json").read_text())
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"key": "k", "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1", "transport": "tcp"}))
    argv = [a.replace("{connection_file}", str(conn)) if a == "{connection_file}" else a for a in spec["argv"]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "No module named 'nosuchmodule'" in proc.stderr


def test_a_kernel_command_that_ends_at_once_does_not_leave_the_launcher_waiting(rik, jupyter_home: Path, tmp_path: Path) -> None:
    # Ends before anything could call it started: the launcher must still end, with the command's own words.
    rik("manage", "--add", "-n", "Gone", "-k", "/bin/sh -c 'echo no kernel here; exit 3' {connection_file}", check=True)
    spec = json.loads((jupyter_home / "data" / "kernels" / "rik_local_gone" / "kernel.json").read_text())
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"key": "5f0e" * 8, "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1", "transport": "tcp"}))
    argv = [str(conn) if a == "{connection_file}" else a for a in spec["argv"]]
    # A plain sh as the login shell starts in a few ms: the command ends before the launcher could see it start.
    env = {**os.environ, "SHELL": "/bin/sh"}
    for _ in range(3):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
        assert proc.returncode != 0, proc.stderr
        assert "no kernel here" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_local_kernel_keeps_jupyters_environment_and_a_pre_command_gets_the_login_shell(
    rik, jupyter_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel on this machine starts in the environment Jupyter gave it, without the login shell's profile (its
    time would be added to every start); with --remote-precmd (`module load ...`) the login shell is there."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("export RIK_PROFILE_RAN=yes\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHELL", "/bin/sh")
    monkeypatch.setenv("RIK_FROM_JUPYTER", "kept")
    rik("manage", "--add", "-i", "local", "-n", "Plain", check=True)
    rik("manage", "--add", "-i", "local", "-n", "Pre", "--remote-precmd", "export RIK_PRE=ran", check=True)
    code = "import os; print(os.environ.get('RIK_PROFILE_RAN'), os.environ.get('RIK_FROM_JUPYTER'), os.environ.get('RIK_PRE'))"
    with started("rik_local_plain") as k:
        assert k.run(code).split() == ["None", "kept", "None"]
    with started("rik_local_pre") as k:
        assert k.run(code).split() == ["yes", "kept", "ran"]
