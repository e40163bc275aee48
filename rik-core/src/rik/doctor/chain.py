"""The ssh chain, hop by hop: each host is reachable from the one before it, its host key is known, the login
works without a prompt (or with the kernel's askpass program), and it allows the forwarding rik needs there: TCP to
reach the next hop (``ssh -J`` and the tunnel to a job's node), Unix sockets (or TCP) on the kernel's own host,
tried for real and recognising sshd's "administratively prohibited"."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Endpoint, KernelConfig
from ..models import LaunchCommand
from ..ssh import SSHTransport, explain_ssh_failure
from .probe import CHECK_TIMEOUT, Done, Remote, kernel_probe
from .report import OK, PROBLEM, SKIPPED, Report

__all__ = ["chain_checks", "skip_after"]


def chain_checks(
    report: Report,
    config: KernelConfig,
    command: LaunchCommand | None,
    remote: Remote,
    hops: Sequence[Endpoint],
    transport: SSHTransport,
) -> bool:
    """Login and forwarding on every hop; True when the last hop can run commands."""
    how = f"with askpass {transport.askpass_program()}" if transport.askpass_program() else "without a prompt"
    keys = "known" if config.host_keys == "strict" else "known or trusted on first use (--host-keys accept-new)"
    has_job = bool(command and command.argv)
    for i, hop in enumerate(hops):
        before = hops[:i]
        via = f" via {' '.join(str(h) for h in before)}" if before else ""
        done = remote.login(hop, before)
        if done.code != 0:
            report.add("ssh", str(hop), PROBLEM, *login_problem(hop, before, done))
            skip_after(report, hops[i + 1 :], f"{hop} cannot be reached")
            return False
        logged = "rides the connection running kernels share" if remote.rides_shared(before) else f"logged in {how}"
        report.add("ssh", str(hop), OK, f"ssh {hop}{via}: reachable, host key {keys}, {logged}")
        last = i == len(hops) - 1
        if not last:
            needs = "tcp"
            why = f"the way to {hops[i + 1]}"
        elif has_job:
            needs = "tcp"
            why = "the tunnel to the job's node"
        else:
            needs = "unix" if config.effective_transport() == "ipc" else "tcp"
            why = "the tunnel to the kernel"
        onwards = None if last else hops[i + 1]
        if not forwarding_check(report, remote, hop, before, onwards, needs, why, has_job, config) and not last:
            skip_after(report, hops[i + 1 :], f"{hop} does not forward TCP")
            return False
    return True


def skip_after(report: Report, hops: Sequence[Endpoint], reason: str) -> None:
    for hop in hops:
        report.add("ssh", str(hop), SKIPPED, f"ssh {hop}: not checked ({reason})")
    report.add("host", "-", SKIPPED, f"commands on the host: not checked ({reason})")


def forwarding_check(
    report: Report,
    remote: Remote,
    hop: Endpoint,
    before: Sequence[Endpoint],
    onwards: Endpoint | None,
    needs: str,
    why: str,
    has_job: bool,
    config: KernelConfig,
) -> bool:
    last = onwards is None

    def tried() -> dict[str, str | None]:
        unix = None
        if last and needs == "unix":
            probe, _package = kernel_probe(config.kernel_argv())
            python = probe[0] if probe and _package == "ipykernel" else "python3"
            unix = remote.unix_forwarding(hop, before, python, config.precmd)
        return {"tcp": forwarding_result(remote.tcp_forwarding(hop, before, onwards)), "unix": unix}

    results = tried()
    unclear = remote.rides_shared(before) and any(v not in (None, "allowed") for v in results.values())
    # The kernels' master does not say why sshd refused a channel: a connection of doctor's own does.
    if unclear and remote.own(hop, before).code == 0:
        results = tried()
    names = {"tcp": "TCP", "unix": "Unix-socket"}
    needed = results[needs]
    parts = [f"{names[k]} {v}" for k, v in results.items() if v is not None]
    summary = f"forwarding on {hop}: {', '.join(parts)}"
    need = f"{names[needs]} needed for {why}"
    if needed == "prohibited":
        option = "AllowTcpForwarding" if needs == "tcp" else "AllowStreamLocalForwarding"
        report.add(
            "forwarding",
            str(hop),
            PROBLEM,
            f"{summary} ({need}; sshd said 'administratively prohibited')",
            f"ask the administrators of {hop} to allow it ({option} yes in sshd_config)"
            + ("" if needs == "tcp" else ", or make the kernel with --transport tcp"),
        )
        return False
    if needed != "allowed":
        report.add("forwarding", str(hop), SKIPPED, f"{summary} ({need}: could not tell)")
        return True
    note = "; the job's node is checked when a kernel starts" if last and has_job else ""
    report.add("forwarding", str(hop), OK, f"{summary} ({need}{note})")
    return True


# -- on the submit host (or the kernel's host, or this machine) ------------------------------------------


def login_problem(hop: Endpoint, before: Sequence[Endpoint], done: Done) -> tuple[str, str | None]:
    via = f" via {' '.join(str(h) for h in before)}" if before else ""
    if done.timed_out:
        return (f"ssh {hop}{via}: no answer within {CHECK_TIMEOUT:g} s", f"check that {hop} is up and reachable")
    explained = explain_ssh_failure(done.out)
    text = done.out.lower()
    if "host key" in text or "host identification" in text:
        return (f"ssh {hop}{via}: host key: {explained or done.last_line()}", None)
    if "permission denied" in text or "too many authentication failures" in text:
        return (f"ssh {hop}{via}: login: {explained or done.last_line()}", None)
    if "administratively prohibited" in text:
        return (
            f"ssh {hop}{via}: the hop before it does not forward TCP ({done.last_line()})",
            "ask its administrators to allow TCP forwarding (AllowTcpForwarding yes)",
        )
    return (
        f"ssh {hop}{via}: cannot connect: {explained or done.last_line()}",
        f"check the host name (--host/--tunnel-hosts) and that {hop} is up and reachable"
        + (f" from {before[-1]}" if before else ""),
    )


def forwarding_result(done: Done) -> str:
    """allowed / prohibited, or what went wrong, from ssh's own words about the channel it asked for."""
    if "administratively prohibited" in done.out:
        return "prohibited"
    if "open failed: connect failed" in done.out:
        return "allowed"  # sshd tried to connect: forwarding is on (nothing listens where doctor asked)
    if "SSH-2.0-" in done.out:
        return "allowed"  # the greeting of the sshd it was forwarded to
    if done.timed_out:
        return "no answer"
    return done.last_line() if done.out.strip() else "no answer from sshd"
