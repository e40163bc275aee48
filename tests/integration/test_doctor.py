"""``rik doctor`` on the real test cluster: a healthy setup is all ok, and each deliberately broken one is named
with its fix (forwarding disabled on a hop, an unknown host key, a missing kernel command, a wrong partition or parallel environment)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import PY, add_kernel

HOSTS_SH = Path(__file__).resolve().parents[1] / "cluster" / "hosts.sh"
VIA_FRONT = ("-t", "rik-gw", "rik-front")


def doctor(rik, *names: str) -> tuple[int, dict[str, list[dict]]]:
    """``rik doctor --json NAMES``: the exit status and each kernel's checks."""
    result = rik("doctor", "--json", *names)
    assert "Traceback" not in result.err, result.err
    reports = json.loads(result.out)
    assert [r["kernel"] for r in reports] == list(names)
    return result.code, {r["kernel"]: r["checks"] for r in reports}


def find(checks: list[dict], check: str, where: str | None = None) -> dict:
    found = [c for c in checks if c["check"] == check and (where is None or c["where"] == where)]
    assert len(found) == 1, (check, where, checks)
    return found[0]


def statuses(checks: list[dict]) -> list[tuple[str, str, str]]:
    return [(c["check"], c["where"], c["status"]) for c in checks]


@contextmanager
def forwarding_disabled(cluster, host: str, user: str) -> Iterator[None]:
    """sshd on ``host`` refuses TCP and Unix-socket forwarding to ``user`` (only: other tests use other users);
    restored whatever happens."""
    conf = cluster.hosts[host].extra_conf
    original = conf.read_text()
    try:
        conf.write_text(
            original.rstrip("\n")
            + f"\n# rik doctor test (tests/integration/test_doctor.py): no forwarding for {user}\n"
            + f"Match User {user}\n    AllowTcpForwarding no\n    AllowStreamLocalForwarding no\n"
        )
        subprocess.run([str(HOSTS_SH), "reload", host], check=True, capture_output=True, timeout=30)
        yield
    finally:
        conf.write_text(original)
        subprocess.run([str(HOSTS_SH), "reload", host], check=True, capture_output=True, timeout=30)


def test_a_healthy_setup_is_all_ok(rik, cluster, jupyter_home: Path) -> None:
    slurm = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Fine", "--queue", "debug", "--cpus", "2")
    ssh = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *VIA_FRONT, "-n", "Fine", "--workdir", "/tmp",
                     "--remote-precmd", "export RIK_DOCTOR_TEST=1")  # fmt: skip
    askpass = cluster.users["rikpw"].askpass  # a password-only user: the kernel's askpass answers
    password = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-gw", "-n", "Fine", "--askpass", str(askpass), user="rikpw")
    code, reports = doctor(rik, slurm, ssh, password)
    assert code == 0, reports
    assert f"logged in with askpass {askpass}" in find(reports[password], "ssh", "rik-gw")["message"]
    checks = reports[slurm]
    assert all(c["status"] == "ok" for c in checks), statuses(checks)
    assert statuses(checks) == [
        ("plugin", "here", "ok"),
        ("ssh", "rik-gw", "ok"),
        ("forwarding", "rik-gw", "ok"),
        ("ssh", "rik-front", "ok"),
        ("forwarding", "rik-front", "ok"),
        ("scheduler", "rik-front", "ok"),
        ("cancel", "rik-front", "ok"),
        ("queue", "rik-front", "ok"),
        ("shell", "rik-front", "ok"),
        ("kernel", "rik-front", "ok"),
        ("kernel-start", "rik-front", "ok"),
        ("workdir", "rik-front", "ok"),
    ]
    assert "srun" in find(checks, "scheduler")["message"] and "scancel" in find(checks, "cancel")["message"]
    assert "partition debug" in find(checks, "queue")["message"]
    assert "ipykernel" in find(checks, "kernel-start")["message"]
    checks = reports[ssh]
    assert all(c["status"] == "ok" for c in checks), statuses(checks)
    assert [c["where"] for c in checks if c["check"] == "ssh"] == ["rik-gw", "rik-front", "rik-c1"]
    # The kernel binds Unix sockets on rik-c1: that is the forwarding it needs there.
    assert "Unix-socket allowed (Unix-socket needed" in find(checks, "forwarding", "rik-c1")["message"]
    assert "with the pre-command" in find(checks, "shell")["message"]
    assert "/tmp exists on rik-c1" in find(checks, "workdir")["message"]

    text = rik("doctor", slurm)  # the same, for people: one line per check
    assert text.code == 0 and "no problems found" in text.out, text
    assert len([line for line in text.out.splitlines() if line.startswith("  ok ")]) == 12, text.out


def test_forwarding_disabled_on_a_hop_is_named_with_its_fix(rik, cluster, jupyter_home: Path) -> None:
    beyond = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-c1", *VIA_FRONT, "-n", "Beyond", user="rik2")
    on = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-front", "-t", "rik-gw", "-n", "On", user="rik2")
    with forwarding_disabled(cluster, "rik-front", "rik2"):
        code, reports = doctor(rik, beyond, on)
    assert code == 1
    checks = reports[beyond]
    assert statuses(checks)[:5] == [
        ("plugin", "here", "ok"),
        ("ssh", "rik-gw", "ok"),
        ("forwarding", "rik-gw", "ok"),
        ("ssh", "rik-front", "ok"),
        ("forwarding", "rik-front", "problem"),
    ]
    problem = find(checks, "forwarding", "rik-front")
    assert "TCP prohibited" in problem["message"] and "administratively prohibited" in problem["message"]
    assert "AllowTcpForwarding yes" in problem["fix"]
    assert find(checks, "ssh", "rik-c1")["status"] == "skipped"  # ssh -J cannot go through rik-front
    # A kernel on rik-front itself needs Unix-socket forwarding there (ipykernel binds Unix sockets).
    problem = find(reports[on], "forwarding", "rik-front")
    assert problem["status"] == "problem" and "Unix-socket prohibited" in problem["message"], problem
    assert "AllowStreamLocalForwarding yes" in problem["fix"] and "--transport tcp" in problem["fix"]
    assert find(reports[on], "kernel", "rik-front")["status"] == "ok"  # commands still run there


def test_an_unknown_host_key_is_named_and_what_depends_on_it_is_skipped(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text(cluster.ssh_config("rik").read_text().replace(str(cluster.known_hosts), str(empty)))
    result = rik("manage", "--add", "--ssh-config", str(config), "-k", PY, "-i", "ssh", "-x", "rik-front", "-t", "rik-gw",
                 "-n", "Unknown", check=True)  # fmt: skip
    name = result.out.split("'")[1]
    code, reports = doctor(rik, name)
    assert code == 1
    checks = reports[name]
    problem = find(checks, "ssh", "rik-gw")
    assert problem["status"] == "problem"
    assert "the host key of rik-gw is not known" in problem["message"] and "accept-new" in problem["message"]
    assert [c["status"] for c in checks[2:]] == ["skipped", "skipped"], statuses(checks)
    assert empty.read_text() == ""  # doctor trusts nothing on its own

    text = rik("doctor", name)
    assert text.code == 1 and "PROBLEM  ssh rik-gw: host key" in text.out, text
    assert "1 with problems" in text.err


def test_a_missing_kernel_command_and_working_directory_are_named(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "ssh", "-x", "rik-front", "-t", "rik-gw", "-n", "Missing",
                      "--workdir", "/nonexistent/work", kernel_cmd="/usr/bin/nosuchpython -m ipykernel_launcher -f {connection_file}")  # fmt: skip
    code, reports = doctor(rik, name)
    assert code == 1
    checks = reports[name]
    problem = find(checks, "kernel", "rik-front")
    assert problem["status"] == "problem" and "/usr/bin/nosuchpython not found on rik-front" in problem["message"]
    assert "--kernel-cmd" in problem["fix"]
    assert find(checks, "shell")["status"] == "ok"
    problem = find(checks, "workdir")
    assert problem["status"] == "problem" and "/nonexistent/work does not exist on rik-front" in problem["message"]


def test_a_wrong_partition_is_named_with_the_ones_that_exist(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "slurm", "-x", "rik-front", "-t", "rik-gw", "-n", "Wrong", "--queue", "nosuch")
    code, reports = doctor(rik, name)
    assert code == 1
    checks = reports[name]
    problem = find(checks, "queue", "rik-front")
    assert problem["status"] == "problem" and "partition nosuch on rik-front: does not exist" in problem["message"]
    assert "debug" in problem["fix"] and "--queue" in problem["fix"]
    assert [c["check"] for c in checks if c["status"] == "problem"] == ["queue"], statuses(checks)



def test_grid_engine_queue_and_parallel_environment_are_asked_through_the_plugin(rik, cluster, jupyter_home: Path) -> None:
    name = add_kernel(rik, cluster, "-i", "sge_qrsh", "-x", "rik-front", "-t", "rik-gw", "-n", "Pe", "--queue", "all.q",
                      "--pe", "nosuch", "--cpus", "2")
    code, reports = doctor(rik, name)
    assert code == 1
    checks = reports[name]
    assert find(checks, "queue", "rik-front")["status"] == "ok"
    problem = find(checks, "pe", "rik-front")
    assert problem["message"].startswith("parallel environment nosuch on rik-front: does not exist"), problem
    assert "--pe one of: smp" in problem["fix"]
    assert [c["check"] for c in checks if c["status"] == "problem"] == ["pe"], statuses(checks)

def test_a_local_kernel_is_checked_on_this_machine(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "local", "-n", "Here", check=True)
    code, reports = doctor(rik, "rik_local_here")
    assert code == 0, reports
    checks = reports["rik_local_here"]
    assert [c["check"] for c in checks] == ["plugin", "shell", "kernel", "kernel-start", "workdir"]
    assert all(c["status"] == "ok" and c["where"] == "this machine" for c in checks[1:]), checks
