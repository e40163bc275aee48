"""Kernel settings: parsing, validation, names, and the round trip through kernel.json."""

from __future__ import annotations

import json
import shlex

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


# -- the tolerant loader ------------------------------------------------------------------------------------------


def test_a_config_from_a_newer_rik_is_read_and_its_unknown_settings_kept() -> None:
    data = {"v": 2, "interface": "slurm", "kernel_cmd": KCMD, "name": "p", "language": "python",
            "resources": {"cpus": 2, "nodes": 3},
            "snapshot": {"every": 60}}
    config = KernelConfig.from_json(data)
    assert config.resources.cpus == 2 and config.version == 2
    assert config.unknown_settings() == ["snapshot", "resources.nodes"]
    assert config.to_json() == data  # written back whole, nothing dropped
    with pytest.raises(UsageError, match=r"made by a newer rik \(config version 2; this rik-core reads 1\)"):
        KernelConfig.loads(json.dumps(data))


def test_unknown_settings_in_a_current_config_are_kept_but_the_launcher_refuses_them() -> None:
    data = {"v": 1, "interface": "slurm", "kernel_cmd": KCMD, "name": "p", "language": "python", "resources": {"nodes": 3}}
    assert KernelConfig.from_json(data).to_json() == data
    with pytest.raises(UsageError) as refused:
        KernelConfig.loads(json.dumps(data))
    assert str(refused.value) == (
        "this kernel has settings this rik does not know (resources.nodes): upgrade rik-core, or make the kernel "
        "again with `rik manage --add ... --replace`"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "bad rik kernel configuration: it has no 'interface', 'kernel_cmd', 'name'"),
        ({"interface": "ssh", "name": "n"}, "bad rik kernel configuration: it has no 'kernel_cmd'"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": None}, "bad rik kernel configuration: it has no 'name'"),
        ([], "bad rik kernel configuration: not a JSON object"),
        ({"v": "one", "interface": "ssh", "kernel_cmd": KCMD, "name": "n"},
         "bad rik kernel configuration: version 'one' is not a positive whole number"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "grace": "long"},
         "bad rik kernel configuration: 'grace' is \"long\", not a number"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "resources": {"cpus": "4"}},
         "bad rik kernel configuration: 'resources.cpus' is \"4\", not a whole number"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "resources": []},
         "bad rik kernel configuration: 'resources' is not a JSON object"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "tunnel_hosts": "gw"},
         "bad rik kernel configuration: 'tunnel_hosts' is \"gw\", not a list of words"),
        ({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "verbose": 1},
         "bad rik kernel configuration: 'verbose' is 1, not true or false"),
    ],
)
def test_a_broken_config_is_one_line_naming_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        KernelConfig.from_json(data)
    assert str(refused.value) == message
    with pytest.raises(UsageError) as refused_too:
        KernelConfig.loads(json.dumps(data))
    assert str(refused_too.value) == message


def test_ints_are_read_as_floats_where_floats_are_expected() -> None:
    config = KernelConfig.from_json({"interface": "ssh", "kernel_cmd": KCMD, "name": "n", "grace": 5})
    assert config.grace == 5.0 and isinstance(config.grace, float)


# -- normalised values, names -------------------------------------------------------------------------------------


def test_validate_normalises_memory_and_walltime_per_scheduler() -> None:
    sge = SchedulerInfo(name="sge", options=frozenset({"walltime", "memory"}))
    config = KernelConfig(interface="slurm", kernel_cmd=KCMD, name="p", resources=Resources(memory="0.5G", walltime="30:00"))
    assert config.validate(SLURM).resources == Resources(memory="512M", walltime="0:30:00")
    with pytest.raises(UsageError, match="use H:MM:SS"):
        config.with_changes(interface="sge").validate(sge)
    ok = config.with_changes(interface="sge", resources=Resources(walltime="48:00:00", memory="8GiB")).validate(sge)
    assert ok.resources == Resources(walltime="48:00:00", memory="8G")


def test_names_without_a_latin_spelling_get_a_hash_and_stay_distinct() -> None:
    local = SchedulerInfo(name="local")
    names = {n: KernelConfig(interface="local", kernel_cmd=KCMD, name=n).kernel_name(local)
             for n in ("日本語", "中文", "Café", "Python 3", "Python 3 日本")}
    assert names["Café"] == "rik_local_cafe" and names["Python 3"] == "rik_local_python_3"
    assert len(set(names.values())) == len(names)
    assert all(v.isascii() for v in names.values())
    assert names["日本語"] == KernelConfig(interface="local", kernel_cmd=KCMD, name="日本語").kernel_name(local)


def test_the_option_table_gives_the_config_its_defaults_and_choices() -> None:
    from rik.options import MANAGE_OPTIONS, by_field

    bare = KernelConfig(interface="local", kernel_cmd=KCMD, name="n")
    for opt in MANAGE_OPTIONS:
        if opt.field and not opt.resource and opt.field not in ("interface", "kernel_cmd", "name"):
            assert getattr(bare, opt.field) == (opt.default if opt.kind != "list" else ()), opt.field
    with pytest.raises(UsageError) as refused:
        bare.with_changes(transport="carrier-pigeon").validate(SchedulerInfo(name="local"))
    assert str(refused.value) == f"--transport must be one of {', '.join(by_field('transport').choices or ())}, not 'carrier-pigeon'"


def test_every_setting_survives_the_recreate_command() -> None:
    """The command `rik manage --show` prints parses, through the same click options, to the same config."""
    from rik.cli import manage
    from rik.config import recreate_command

    config = KernelConfig(
        interface="slurm", kernel_cmd=KCMD, name="All of it", language="julia", host="me@login:2222",
        tunnel_hosts=("gw", "front"), resources=Resources(cpus=4, memory="4G", walltime="1:00:00", gpus=2,
        queue="gpu", account="proj", pe="smp"), job_name="nb", launch_cmd="/opt/bin/srun", launch_args="-C avx2",
        workdir="~/w", precmd="module load x", verbose=True, ssh_config="/etc/ssh/ssh_config", host_keys="accept-new",
        askpass="/usr/bin/true", transport="tcp", queue_timeout=60.0, grace=5.0, interrupt_mode="signal",
    )
    args = shlex.split(recreate_command(config))
    assert args[:3] == ["rik", "manage", "--add"]
    ctx = manage.make_context("manage", args[2:])
    opts = dict(ctx.params)
    again = KernelConfig.from_options(opts, interface=opts["interface"], kernel_cmd=opts["kernel_cmd"])
    assert again == config
