"""`rik manage` with rik-ssh: remote_ikernel's several-value --tunnel-hosts, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from manage_cases import assert_refused, kernels

KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


def test_tunnel_hosts_take_several_values_like_remote_ikernel(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "ssh", "-x", "me@c1:2222", "--tunnel-hosts", "gw", "front:2222", "-n", "T", check=True)
    spec = json.loads((kernels(jupyter_home) / "rik_ssh_me_c1_2222_t_via_gw_front_2222" / "kernel.json").read_text())
    config = json.loads(spec["argv"][4])
    assert config["tunnel_hosts"] == ["gw", "front:2222"] and config["host"] == "me@c1:2222"
    assert spec["display_name"] == "SSH T on me@c1:2222 via gw front:2222"
    assert config["kernel_cmd"] == KCMD  # a remote kernel: the remote side's python3


REFUSALS = [
    (["-i", "ssh"], "interface 'ssh' needs --host (host, user@host or host:port)"),
    (["-i", "ssh", "-x", "h:99999"], "bad host 'h:99999': the port after ':' must be a number from 1 to 65535"),
    (["-i", "ssh", "-x", "-oProxyCommand=x"], "bad host '-oProxyCommand=x': expected host, user@host or host:port"),
    (["-i", "ssh", "-x", "h", "--cpus", "2"],
     "interface 'ssh' does not take --cpus (it takes: none; --remote-launch-args passes anything else to the scheduler)"),
    (["-i", "ssh", "-x", "h", "--transport", "direct"],
     "--transport direct runs the kernel's job on this machine: drop --host and --tunnel-hosts, or use --transport auto"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_bad_ssh_kernels_are_refused_in_one_line(rik, jupyter_home: Path, args: list[str], message: str) -> None:
    assert_refused(rik, jupyter_home, ["manage", "--add", *args], 2, message)
