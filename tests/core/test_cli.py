"""`rik manage` and `rik plugins` as a user runs them: what they write, and how they refuse bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kernels import tree

KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


def kernels(home: Path) -> Path:
    return home / "data" / "kernels"


def test_version_and_help(rik) -> None:
    assert rik("--version", check=True).out.startswith("rik, version ")
    assert "--tunnel-hosts" in rik("manage", "--help", check=True).out


def test_add_writes_a_kernelspec_jupyter_lists_with_the_universal_argv(rik, jupyter_home: Path) -> None:
    out = rik("manage", "--add", "-i", "ssh", "-x", "me@login:2222", "-t", "gw", "front", "-n", "Py 3", check=True).out
    assert "rik_ssh_me_login_2222_py_3_via_gw_front" in out
    spec = json.loads((kernels(jupyter_home) / "rik_ssh_me_login_2222_py_3_via_gw_front" / "kernel.json").read_text())
    argv = spec["argv"]
    assert argv[1:4] == ["-m", "rik", "--kernel-config"] and argv[-1] == "{connection_file}"
    assert os.path.exists(argv[0])
    assert "{connection_file}" not in argv[4]  # front ends must not substitute the remote kernel's argument
    config = json.loads(argv[4])
    assert config["tunnel_hosts"] == ["gw", "front"] and config["host"] == "me@login:2222"
    assert spec["display_name"] == "SSH Py 3 on me@login:2222 via gw front"
    assert spec["interrupt_mode"] == "message"
    from jupyter_client.kernelspec import KernelSpecManager

    assert "rik_ssh_me_login_2222_py_3_via_gw_front" in KernelSpecManager().find_kernel_specs()


def test_show_prints_settings_and_the_command_that_recreates_the_kernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "slurm", "-x", "login", "--cpus", "4", "--walltime", "1:00:00", "--queue", "debug",
        "-k", KCMD, "-n", "P", "--remote-precmd", "module load python", check=True)
    out = rik("manage", "--show", check=True).out
    assert "rik_slurm_login_p_4: SLURM P on login (debug, 4 CPUs, 1:00:00)" in out
    recreate = next(line for line in out.splitlines() if "recreate:" in line).split("recreate: ", 1)[1]
    # Running the printed command (after deleting) makes the same kernel again.
    rik("manage", "--delete", "RIK_SLURM_LOGIN_P_4", check=True)  # any case works
    import shlex

    args = shlex.split(recreate)
    assert args[:2] == ["rik", "manage"]
    rik(*args[1:], check=True)
    assert rik("manage", "--show", "rik_slurm_login_p_4", check=True).out == out


def test_delete_removes_the_kernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "L", check=True)
    assert (kernels(jupyter_home) / "rik_local_l").exists()
    rik("manage", "--delete", "rik_local_l", check=True)
    assert not (kernels(jupyter_home) / "rik_local_l").exists()


BAD_INPUTS = [
    (["manage", "--add", "-i", "nosuch"], "unknown interface 'nosuch'"),
    (["manage", "--add", "-i", "ssh"], "needs --host"),
    (["manage", "--add", "-i", "ssh", "-x", "h:99999"], "port after ':'"),
    (["manage", "--add", "-k", "python3 -m ipykernel_launcher"], "must contain {connection_file}"),
    (["manage", "--add", "-k", "python3 -c 'oops {connection_file}"], "does not parse"),
    (["manage", "--add", "-i", "ssh", "-x", "h", "--cpus", "2"], "does not take --cpus"),
    (["manage", "--add", "-i", "slurm", "--walltime", "soon"], "bad --walltime"),
    (["manage", "--add", "--cpus", "0"], "0 is not in the range"),
    (["manage", "--add", "--no-such-option"], "No such option"),
    (["manage", "--delete", "rik_nothing_here"], "no rik kernel named 'rik_nothing_here'"),
    (["manage", "--delete"], "--delete needs the NAME"),
    (["manage"], "say what to do"),
    (["manage", "--add", "--ssh-config", "/nonexistent/config"], "no such file"),
    (["manage", "--add", "-i", "ssh", "-x", "h", "--transport", "direct"], "--transport direct runs"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_changes_nothing(rik, jupyter_home: Path, args: list[str], message: str) -> None:
    rik("manage", "--add", "-n", "Existing", check=True)
    before = tree(kernels(jupyter_home))
    result = rik(*args)
    assert result.code != 0
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    assert tree(kernels(jupyter_home)) == before


def test_unknown_interface_of_a_first_party_plugin_says_what_to_install(rik, monkeypatch) -> None:
    monkeypatch.setenv("RIK_DISABLE_PLUGINS", "slurm")
    result = rik("manage", "--add", "-i", "slurm")
    assert result.code == 2
    assert "slurm" in result.err and ("pip install rik-slurm" in result.err or "disabled" in result.err)


def test_a_name_collision_is_refused_unless_replace(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Twin", check=True)
    before = tree(kernels(jupyter_home))
    result = rik("manage", "--add", "-n", "Twin", "--remote-precmd", "true")
    assert result.code == 2 and "--replace" in result.err
    assert tree(kernels(jupyter_home)) == before
    rik("manage", "--add", "-n", "Twin", "--remote-precmd", "true", "--replace", check=True)
    assert tree(kernels(jupyter_home)) != before


def test_an_unwritable_location_is_one_line_and_nothing_half_made(rik, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/rik-cannot-write-here")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    result = rik("manage", "--add", "-n", "X", "--prefix", str(target))
    assert result.code == 2 and "cannot write" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_prefix_and_system_are_exclusive(rik) -> None:
    result = rik("manage", "--add", "--system", "--prefix", "/tmp/x")
    assert result.code == 2 and "give one" in result.err


def test_plugins_lists_every_first_party_interface_as_json(rik) -> None:
    data = json.loads(rik("plugins", "--json", check=True).out)
    by_name = {p["name"]: p for p in data}
    assert by_name["local"]["status"] == "ok" and by_name["local"]["distribution"] == "rik-core"
    interfaces = {s["name"] for p in data for s in p["schedulers"]}
    installed = {p["name"] for p in data}
    expected = {"local"} | ({"ssh"} & installed) | ({"slurm"} & installed) | ({"pbs"} & installed) | ({"lsf"} & installed)
    assert expected <= interfaces
    if "sge" in installed:
        assert {"sge", "sge_qrsh"} <= interfaces


def test_tunnel_hosts_take_several_values_like_remote_ikernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "ssh", "-x", "c1", "--tunnel-hosts", "gw", "front:2222", "-n", "T", check=True)
    spec = json.loads((kernels(jupyter_home) / "rik_ssh_c1_t_via_gw_front_2222" / "kernel.json").read_text())
    assert json.loads(spec["argv"][4])["tunnel_hosts"] == ["gw", "front:2222"]
