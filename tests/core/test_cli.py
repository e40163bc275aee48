"""`rik manage` and `rik plugins` as a user runs them: what they write, and how they refuse bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import venv
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from manage_cases import assert_refused, kernels, snapshot
from rik import __version__

KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


def test_version_lists_rik_core_and_every_installed_plugin(rik) -> None:
    lines = rik("--version", check=True).out.splitlines()
    assert lines[:2] == [f"rik, version {__version__}", f"rik-core {__version__}"]
    expected = sorted(
        {f"{ep.dist.name} {ep.dist.version} (plugin {ep.name})" for ep in entry_points(group="rik") if ep.dist}
    )
    assert sorted(lines[2:]) == expected
    assert rik("-V", check=True).out.splitlines() == lines


def test_bare_rik_prints_the_help(rik) -> None:
    result = rik()
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith("Usage: rik [OPTIONS] COMMAND") or result.out.startswith("Usage: rik [OPTIONS]")
    assert "manage" in result.out and "_RIK_COMPLETE=bash_source rik" in result.out


def test_manage_help_explains_every_option(rik) -> None:
    out = rik("manage", "--help", check=True).out
    from rik.options import MANAGE_OPTIONS

    for opt in MANAGE_OPTIONS:
        assert opt.flag in out, opt.flag
    # --language and --interrupt-mode used to have no help at all
    language = out[out.index("--language") : out.index("-x, --host")]
    assert "front ends show it" in language
    interrupt = out[out.index("--interrupt-mode") : out.index("--queue-timeout")]
    assert "SIGINT" in " ".join(interrupt.split())


def test_add_writes_a_kernelspec_jupyter_lists_with_the_universal_argv(rik, jupyter_home: Path) -> None:
    out = rik("manage", "--add", "-i", "local", "-n", "Py 3", "--grace", "5", check=True).out
    assert out == f"Added kernel 'rik_local_py_3' (Local Py 3) in {kernels(jupyter_home) / 'rik_local_py_3'}\n"
    spec = json.loads((kernels(jupyter_home) / "rik_local_py_3" / "kernel.json").read_text())
    argv = spec["argv"]
    assert argv[1:4] == ["-m", "rik", "--kernel-config"] and argv[-1] == "{connection_file}"
    assert os.path.exists(argv[0])
    assert "{connection_file}" not in argv[4]  # front ends must not substitute the remote kernel's argument
    config = json.loads(argv[4])
    assert config["grace"] == 5.0 and config["kernel_cmd"].startswith(sys.executable)
    assert spec["display_name"] == "Local Py 3"
    assert spec["interrupt_mode"] == "message"
    from jupyter_client.kernelspec import KernelSpecManager

    assert "rik_local_py_3" in KernelSpecManager().find_kernel_specs()


def test_dry_run_shows_the_kernel_json_it_would_write_and_writes_nothing(rik, jupyter_home: Path) -> None:
    before = snapshot(kernels(jupyter_home))
    out = rik("manage", "--add", "-n", "Dry", "--dry-run", check=True).out
    path = kernels(jupyter_home) / "rik_local_dry"
    first, _, rest = out.partition("\n")
    assert first == f"Would add kernel 'rik_local_dry' (Local Dry) in {path}, with this kernel.json:"
    assert snapshot(kernels(jupyter_home)) == before
    shown = json.loads(rest)
    rik("manage", "--add", "-n", "Dry", check=True)
    written = json.loads((path / "kernel.json").read_text())
    # The same kernel.json but for the command line it records (which had --dry-run).
    assert shown["metadata"]["rik"].pop("manage_argv")[-1] == "--dry-run"
    assert written["metadata"]["rik"].pop("manage_argv") == ["rik", "manage", "--add", "-n", "Dry"]
    assert shown == written


def test_replace_says_replaced(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Twin", check=True)
    before = snapshot(kernels(jupyter_home))
    result = rik("manage", "--add", "-n", "Twin", "--remote-precmd", "true")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"rik: error: a kernel named 'rik_local_twin' already exists in {kernels(jupyter_home)}: "
        "pass --replace to overwrite it\n"
    )
    assert snapshot(kernels(jupyter_home)) == before
    out = rik("manage", "--add", "-n", "Twin", "--remote-precmd", "true", "--replace", check=True).out
    assert out == f"Replaced kernel 'rik_local_twin' (Local Twin) in {kernels(jupyter_home) / 'rik_local_twin'}\n"
    assert snapshot(kernels(jupyter_home)) != before


def test_show_prints_settings_and_the_command_that_recreates_the_kernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "P", "--remote-precmd", "module load python", "--host-keys", "accept-new",
        "--grace", "90", "--interrupt-mode", "signal", check=True)
    out = rik("manage", "--show", check=True).out
    assert out.startswith("rik_local_p: Local P\n")
    recreate = next(line for line in out.splitlines() if "recreate:" in line).split("recreate: ", 1)[1]
    # Running the printed command (after deleting) makes the same kernel again.
    rik("manage", "--delete", "RIK_LOCAL_P", check=True)  # any case works
    args = shlex.split(recreate)
    assert args[:3] == ["rik", "manage", "--add"]
    rik(*args[1:], check=True)
    assert rik("manage", "--show", "rik_local_p", check=True).out == out


def test_show_accepts_the_display_name_and_gives_json(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Alpha", check=True)
    rik("manage", "--add", "-n", "Beta", "--provisioner", check=True)
    by_display = rik("manage", "--show", "local beta", check=True).out
    assert by_display == rik("manage", "--show", "rik_local_beta", check=True).out
    data = json.loads(rik("manage", "--show", "--json", check=True).out)
    assert [k["name"] for k in data] == ["rik_local_alpha", "rik_local_beta"]
    beta = data[1]
    assert beta["display_name"] == "Local Beta" and beta["provisioner"] is True
    assert beta["config"]["name"] == "Beta" and beta["recreate"].endswith(" --provisioner")
    assert beta["path"] == str(kernels(jupyter_home) / "rik_local_beta")
    assert json.loads(rik("manage", "--show", "--json", "Local Alpha", check=True).out)[0]["name"] == "rik_local_alpha"


def test_delete_removes_the_kernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "L", check=True)
    assert (kernels(jupyter_home) / "rik_local_l").exists()
    rik("manage", "--delete", "rik_local_l", check=True)
    assert not (kernels(jupyter_home) / "rik_local_l").exists()


def test_names_in_other_scripts_stay_distinct(rik, jupyter_home: Path) -> None:
    first = rik("manage", "--add", "-n", "日本語", check=True).out
    second = rik("manage", "--add", "-n", "中文", check=True).out
    rik("manage", "--add", "-n", "Café", check=True)
    names = sorted(p.name for p in kernels(jupyter_home).iterdir())
    assert len(names) == 3 and "rik_local_cafe" in names, names
    assert all(n.isascii() and n.startswith("rik_local_") for n in names)
    assert "Local 日本語" in first and "Local 中文" in second
    # The same name twice is the same kernel (the name is derived, not random).
    again = rik("manage", "--add", "-n", "日本語")
    assert again.code == 1 and "already exists" in again.err


def test_shell_completion_completes_kernel_names(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-n", "Complete Me", check=True)
    rik("manage", "--add", "-n", "Other", check=True)
    env = dict(os.environ, _RIK_COMPLETE="bash_complete", COMP_WORDS="rik manage --show rik_local_c", COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-m", "rik"], env=env, capture_output=True, text=True, timeout=60)
    # __main__ hands an argv without --kernel-config to the CLI, whose completion answers and exits.
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,rik_local_complete_me"]


BAD_INPUTS = [
    # what to do: one action
    (["manage", "--show", "--delete", "rik_local_existing"], 2,
     "--show and --delete exclude each other: give one of --add, --show, --delete, --import"),
    (["manage", "--add", "--show"], 2, "--add and --show exclude each other: give one of --add, --show, --delete, --import"),
    (["manage", "--delete", "--show", "rik_local_existing"], 2,
     "--show and --delete exclude each other: give one of --add, --show, --delete, --import"),
    (["manage", "--add", "--import"], 2,
     "--add and --import exclude each other: give one of --add, --show, --delete, --import"),
    (["manage"], 2, "say what to do: --add, --show, --delete or --import (see `rik manage --help`)"),
    (["manage", "--show", "--cpus", "2"], 2, "--cpus goes with --add, not with --show"),
    (["manage", "--delete", "rik_local_existing", "--json"], 2, "--json goes with --show, not with --delete"),
    (["manage", "--add", "--json"], 2, "--json goes with --show, not with --add"),
    (["manage", "--delete"], 2, "--delete needs the NAME of the kernel(s) to delete (see `rik manage --show`)"),
    # click's own usage errors carry the same prefix
    (["manage", "--add", "--no-such-option"], 2,
     "No such option '--no-such-option'. (see `rik manage --help`)"),
    (["manage", "--add", "--cpus", "0"], 2,
     "Invalid value for '-c' / '--cpus': 0 is not in the range x>=1. (see `rik manage --help`)"),
    (["nosuch"], 2, "No such command 'nosuch'. (see `rik --help`)"),
    # where the kernelspec goes
    (["manage", "--add", "--system", "--prefix", "/tmp/x"], 2, "--system and --prefix are different locations: give one"),
    (["manage", "--add", "--system", "--user"], 2, "--system and --user are different locations: give one"),
    (["manage", "--add", "--prefix", "/tmp/x", "--user"], 2, "--user and --prefix are different locations: give one"),
    # the kernel
    (["manage", "--add", "-i", "nosuch"], 2, None),
    (["manage", "--add", "-k", "python3 -m ipykernel_launcher"], 2,
     "the kernel command must contain {connection_file}: 'python3 -m ipykernel_launcher'"),
    (["manage", "--add", "-k", "python3 -c 'oops {connection_file}"], 2,
     "the kernel command does not parse (No closing quotation): \"python3 -c 'oops {connection_file}\""),
    (["manage", "--add", "-k", "/nonexistent/python3 -m ipykernel_launcher -f {connection_file}"], 2,
     "the kernel command's program '/nonexistent/python3' is not found on this machine (the kernel runs here): "
     "give --kernel-cmd a program that exists"),
    (["manage", "--add", "-i", "local", "--host", "somewhere"], 2,
     "interface 'local' runs the kernel on this machine: drop --host somewhere, or use --interface ssh --host somewhere"),
    (["manage", "--add", "-t", "gw"], 2, "--tunnel-hosts needs --host: interface 'local' does not use SSH"),
    (["manage", "--add", "--cpus", "2"], 2,
     "interface 'local' does not take --cpus (it takes: none; --remote-launch-args passes anything else to the "
     "scheduler)"),
    (["manage", "--add", "--transport", "direct", "-t", "gw", "-x", "h"], 2,
     "interface 'local' runs the kernel on this machine: drop --host h, or use --interface ssh --host h"),
    # names
    (["manage", "--add", "-n", "---"], 2, "bad --name '---': give a name with at least one letter or digit"),
    (["manage", "--add", "-n", "  "], 2, "bad --name '  ': give a name with at least one letter or digit"),
    (["manage", "--add", "-n", ""], 2, "bad --name '': give a name with at least one letter or digit"),
    (["manage", "--add", "-n", "two\nlines"], 2,
     "--name must be one line of text: 'two\\nlines' has a line break or control character"),
    # one-line and absolute settings
    (["manage", "--add", "--remote-precmd", "module load x\nrm -rf ~"], 2,
     "--remote-precmd must be one line of text: 'module load x\\nrm -rf ~' has a line break or control character"),
    (["manage", "--add", "--workdir", "some/rel"], 2,
     "--workdir 'some/rel' must be an absolute path or start with ~ (the remote side has no current directory it "
     "could be relative to)"),
    (["manage", "--add", "--job-name", "a b"], 2, "bad --job-name 'a b': use letters, digits, '_', '.', '-'"),
    # local files and programs
    (["manage", "--add", "--ssh-config", "/nonexistent/config"], 2, "--ssh-config '/nonexistent/config': no such file"),
    (["manage", "--add", "--askpass", "/nonexistent"], 2,
     "--askpass '/nonexistent': no such file (give the path of a program that prints the answer)"),
    (["manage", "--add", "--askpass", "/tmp"], 2,
     "--askpass '/tmp': not an executable program (give the path of a program that prints the answer)"),
    (["manage", "--add", "--askpass", "no-such-askpass-program"], 2,
     "--askpass 'no-such-askpass-program': no such program on PATH (give the path of a program that prints the "
     "answer)"),
    # failures, not usage errors: status 1
    (["manage", "--delete", "rik_nothing_here"], 1, "no rik kernel named 'rik_nothing_here' (rik kernels: rik_local_existing)"),
    (["manage", "--show", "rik_nothing_here"], 1, "no rik kernel named 'rik_nothing_here' (rik kernels: rik_local_existing)"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUTS, ids=[" ".join(a)[:60] for a, _, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_changes_nothing(
    rik, jupyter_home: Path, args: list[str], code: int, message: str | None
) -> None:
    if message is None:  # the list of interfaces depends on the plugins installed
        names = sorted(ep.name for ep in entry_points(group="rik"))
        result = rik(*args)
        assert result.code == code and result.err.startswith("rik: error: unknown interface 'nosuch'"), result
        assert len(result.err.splitlines()) == 1 and all(n in result.err for n in names), result
        return
    assert_refused(rik, jupyter_home, args, code, message)


def test_a_local_python_without_ipykernel_is_refused_with_a_hint(rik, jupyter_home: Path, tmp_path: Path) -> None:
    venv.create(tmp_path / "bare", with_pip=False)
    python = tmp_path / "bare" / "bin" / "python"
    message = (
        f"{python} has no module 'ipykernel_launcher', so this kernel could not start: install ipykernel there "
        f"({python} -m pip install ipykernel), or give --kernel-cmd a Python that has it"
    )
    assert_refused(rik, jupyter_home, ["manage", "--add", "-k", f"{python} -m ipykernel_launcher -f {{connection_file}}"],
                  2, message)


def test_unknown_interface_of_a_first_party_plugin_says_what_to_install(rik, monkeypatch) -> None:
    monkeypatch.setenv("RIK_DISABLE_PLUGINS", "slurm")
    result = rik("manage", "--add", "-i", "slurm")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith("rik: error: ")
    # With rik-slurm installed (the `tests` session) it is the disabled plugin; alone (`tests-core`), a missing one.
    installed = importlib.util.find_spec("rik_slurm") is not None
    assert ("plugin 'slurm', which is disabled" if installed else "install it with `pip install rik-slurm`") in result.err


def test_an_unwritable_location_is_one_line_and_nothing_half_made(rik, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/rik-cannot-write-here")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    before = snapshot(target)
    result = rik("manage", "--add", "-n", "X", "--prefix", str(target))
    assert result.code == 1 and result.err.startswith(f"rik: error: cannot write to {target}/share/jupyter/kernels: ")
    assert len(result.err.splitlines()) == 1
    assert snapshot(target) == before


def test_plugins_lists_every_first_party_interface_as_json(rik) -> None:
    data = json.loads(rik("plugins", "--json", check=True).out)
    by_name = {p["name"]: p for p in data}
    assert by_name["local"]["status"] == "ok" and by_name["local"]["distribution"] == "rik-core"
    interfaces = {s["name"] for p in data for s in p["schedulers"]}
    installed_plugins = {p["name"] for p in data}
    expected = {"local"} | ({"ssh", "slurm", "pbs", "lsf"} & installed_plugins)
    assert expected <= interfaces
    if "sge" in installed_plugins:
        assert {"sge", "sge_qrsh"} <= interfaces


def test_the_launcher_given_a_bad_config_says_so_in_one_line(tmp_path: Path) -> None:
    for config, message in (
        ("{}", "bad rik kernel configuration: it has no 'interface', 'kernel_cmd', 'name'"),
        ("[1]", "bad rik kernel configuration: not a JSON object"),
        ('{"v": 2, "interface": "local", "kernel_cmd": "x {connection_file}", "name": "n"}',
         "this kernel was made by a newer rik (config version 2; this rik-core reads 1): upgrade rik-core"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "rik", "--kernel-config", config, str(tmp_path / "kernel.json")],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 2 and done.stdout == "", done
        assert len(done.stderr.splitlines()) == 1 and done.stderr.rstrip().endswith(f"] {message}"), done.stderr


def _edit_config(home: Path, name: str, change) -> None:
    path = kernels(home) / name / "kernel.json"
    spec = json.loads(path.read_text())
    change(spec["metadata"]["rik"]["config"])
    path.write_text(json.dumps(spec))


def test_show_reads_each_kernel_on_its_own_and_names_a_broken_one_with_its_fix(rik, jupyter_home: Path) -> None:
    for name in ("A", "B", "C", "D"):
        rik("manage", "--add", "-n", name, check=True)
    _edit_config(jupyter_home, "rik_local_a", lambda c: c.pop("interface"))  # broken
    _edit_config(jupyter_home, "rik_local_b", lambda c: c.update(v=2, snapshot={"every": 60}))  # a newer rik's
    _edit_config(jupyter_home, "rik_local_c", lambda c: c.update(resources={"nodes": 2}))  # an unknown resource
    before = snapshot(kernels(jupyter_home))
    result = rik("manage", "--show")
    assert result.code == 1
    assert result.err == (
        f"rik: kernel 'rik_local_a' in {kernels(jupyter_home)}: bad rik kernel configuration: it has no "
        "'interface'; make it again with `rik manage --add -n A --replace`\n"
    )
    listed = [line.split(":")[0] for line in result.out.splitlines() if not line.startswith(" ")]
    assert listed == ["rik_local_b", "rik_local_c", "rik_local_d"]
    assert "  not understood, kept (made by a newer rik: config version 2): snapshot; upgrade rik-core to use them" in result.out
    assert "  not understood, kept: resources.nodes; upgrade rik-core to use them" in result.out
    data = json.loads(rik("manage", "--show", "--json").out)
    assert [(k["name"], "error" in k) for k in data] == [
        ("rik_local_a", True), ("rik_local_b", False), ("rik_local_c", False), ("rik_local_d", False)
    ]
    assert data[1]["config"]["snapshot"] == {"every": 60} and data[1]["unknown_settings"] == ["snapshot"]
    assert data[0]["fix"] == "make it again with `rik manage --add -n A --replace`"
    assert snapshot(kernels(jupyter_home)) == before  # reading changes nothing
