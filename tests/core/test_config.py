"""Kernel settings: parsing, validation, names, and the round trip through kernel.json."""

from __future__ import annotations

import pytest
from rik import Resources, SchedulerInfo, UsageError
from rik.config import KernelConfig, parse_endpoint

SLURM = SchedulerInfo(name="slurm", options=frozenset({"cpus", "memory", "walltime", "queue"}), display="SLURM")
SSH = SchedulerInfo(name="ssh", needs_host=True, display="SSH")
KCMD = "python3 -m ipykernel_launcher -f {connection_file}"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("login", "login", None), ("me@login.example.org:2222", "me@login.example.org", 2222), ("10.0.0.1:22", "10.0.0.1", 22)],
)
def test_endpoints_parse_host_user_and_port(text: str, host: str, port: int | None) -> None:
    ep = parse_endpoint(text)
    assert (ep.host, ep.port) == (host, port)


@pytest.mark.parametrize("text", ["login:", "login:abc", "login:70000", "-oProxyCommand=x", "a b", ""])
def test_bad_endpoints_are_refused_with_the_reason(text: str) -> None:
    with pytest.raises(UsageError, match="bad host"):
        parse_endpoint(text)


def test_kernel_name_follows_remote_ikernel_scheme_in_lower_case() -> None:
    config = KernelConfig(
        interface="sge", kernel_cmd=KCMD, name="Python 3.11", host="Login", resources=Resources(cpus=2, pe="smp"),
        launch_cmd="/opt/sge/bin/qrsh", tunnel_hosts=("gw", "front"),
    )
    info = SchedulerInfo(name="sge", options=frozenset({"cpus", "pe"}), display="SGE")
    assert config.kernel_name(info) == "rik_sge_login_python_3_11_qrsh_smp_2_via_gw_front"
    assert config.display_name(info) == "SGE Python 3.11 on Login (qrsh, smp, 2 CPUs) via gw front"


def test_validation_refuses_what_cannot_work() -> None:
    good = KernelConfig(interface="slurm", kernel_cmd=KCMD, name="p")
    assert good.validate(SLURM) is good
    cases = {
        "must contain {connection_file}": dict(kernel_cmd="python3 -m ipykernel_launcher"),
        "does not parse": dict(kernel_cmd="python3 -c 'unbalanced {connection_file}"),
        "does not take --gpus": dict(resources=Resources(gpus=1)),
        "--pe needs --cpus": dict(resources=Resources(pe="smp")),
        "bad --job-name": dict(job_name="a b"),
        "--remote-launch-args does not parse": dict(launch_args="-l 'x"),
    }
    for message, change in cases.items():
        with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("}", r"\}")):
            good.with_changes(**change).validate(SLURM if "pe" not in message else SchedulerInfo(name="slurm", options=frozenset({"pe", "cpus"})))
    with pytest.raises(UsageError, match="needs --host"):
        KernelConfig(interface="ssh", kernel_cmd=KCMD, name="p").validate(SSH)


def test_config_round_trips_through_json_and_keeps_only_what_was_set() -> None:
    config = KernelConfig(
        interface="slurm", kernel_cmd=KCMD, name="p", host="login:2222", tunnel_hosts=("gw",),
        resources=Resources(cpus=4, memory="8G"), verbose=True, queue_timeout=60.0,
    )
    data = config.to_json()
    assert "askpass" not in data and data["resources"] == {"cpus": 4, "memory": "8G"}
    assert KernelConfig.loads(config.dumps()) == config


def test_config_from_a_newer_rik_is_refused_with_advice() -> None:
    with pytest.raises(UsageError, match="newer rik"):
        KernelConfig.loads('{"v": 99, "interface": "ssh", "kernel_cmd": "x", "name": "y"}')


def test_transport_and_interrupt_mode_follow_the_kernel() -> None:
    ipy = KernelConfig(interface="ssh", kernel_cmd=KCMD, name="p")
    r = KernelConfig(interface="ssh", kernel_cmd="R --slave -e 'IRkernel::main()' --args {connection_file}", name="R")
    assert (ipy.effective_transport(), ipy.effective_interrupt_mode()) == ("ipc", "message")
    assert (r.effective_transport(), r.effective_interrupt_mode()) == ("tcp", "signal")
    assert r.kernel_argv() == ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"]
