"""The session's ssh of a remote kernel, started as the launcher's very first step.

With the master connection to the kernel's submit host up (a warm start), the session's ssh only opens a channel on
it and starts ``/bin/sh -s``: it needs neither the plugin nor the kernel's full configuration, only its host, its
jump hosts and its ssh settings. So ``python -m rik`` starts it from the raw ``--kernel-config`` before the launcher
loads the rest of rik (the configuration, logging, pluggy, the plugin, the relay: ~60 ms of imports, ~100 ms with
what follows), and the channel opens on the master meanwhile. The launcher then holds the settings it was started
from against the full configuration, and takes the session over or ends it (:func:`rik.launch.entry.main`).
Without a master (a cold start) nothing is started here: the launcher starts the session itself, behind the one
login per host (:mod:`rik.sshlogin`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..endpoint import Endpoint, parse_endpoint
from ..ssh import SSHSettings, SSHTransport
from ..sshlogin import master_up
from .proc import Proc

__all__ = ["Basis", "Early", "basis", "session", "start"]

#: What the session depends on: host, jump hosts, --ssh-config, --host-keys, --askpass.
Basis = tuple[object, tuple[object, ...], object, object, object]


class Early:
    """The ssh transport and the session's ssh started for a kernel's settings (``basis``), before the launcher."""

    def __init__(self, ssh: SSHTransport, proc: Proc | None, made: Basis) -> None:
        self.ssh = ssh
        self.proc = proc  # None: no master up; the launcher starts the session itself
        self.basis = made

    def drop(self) -> None:
        """Not taken over: the session ends (its remote shell sees the end of its input)."""
        if self.proc is not None:
            self.proc.close_input()
            self.proc.stop(1.0)
            self.proc = None


def basis(host: object, hops: Sequence[object], ssh_config: object, host_keys: object, askpass: object) -> Basis:
    return (host, tuple(hops), ssh_config, host_keys, askpass)


def _config_text(argv: Sequence[str]) -> str | None:
    for i, word in enumerate(argv):
        if word == "--kernel-config" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--kernel-config="):
            return word.partition("=")[2]
    return None


def session(submit: Endpoint, chain: Sequence[Endpoint], settings: SSHSettings) -> tuple[SSHTransport, Proc | None]:
    """The ssh transport, and the session's ssh started when the submit host's master is up (else ``None``: the
    launcher starts it itself, behind the one login per host)."""
    ssh = SSHTransport(settings)
    control = ssh.control_path(submit)
    if control is None or not master_up(control):
        return ssh, None
    # persist=False: with its master up this ssh makes none (what a job's submit host needs, were it to).
    argv = ssh.command(submit, chain, ["/bin/sh", "-s"], persist=False)
    return ssh, Proc(argv, tty=False, env=ssh.env(), name="session")


def start(argv: Sequence[str]) -> Early | None:
    """The ssh transport and, when the submit host's master is up, the session's ssh; ``None`` for a kernel
    without a host, or anything unexpected (the launcher then meets it again, and says so)."""
    try:
        text = _config_text(argv)
        data = json.loads(text) if text else None
        if not isinstance(data, dict) or data.get("v", 1) != 1 or not isinstance(data.get("host"), str):
            return None
        hops = data.get("tunnel_hosts") or []
        if not isinstance(hops, list) or not all(isinstance(h, str) for h in hops):
            return None
        host_keys, ssh_config, askpass = data.get("host_keys", "strict"), data.get("ssh_config"), data.get("askpass")
        made = basis(data["host"], hops, ssh_config, host_keys, askpass)
        submit = parse_endpoint(data["host"])
        chain = tuple(parse_endpoint(h, "tunnel host") for h in hops)
        ssh, proc = session(submit, chain, SSHSettings(ssh_config=ssh_config, host_keys=host_keys, askpass=askpass))
        return Early(ssh, proc, made)
    except Exception:
        return None
