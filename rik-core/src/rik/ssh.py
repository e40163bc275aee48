"""The SSH transport: the system's OpenSSH client, a chain of jump hosts, shared master connections, askpass.

rik never replaces the user's ssh setup: a small config file of rik's own settings is given with ``-F`` and then
``Include``s the kernel's ``--ssh-config``, the user's ``~/.ssh/config`` and the system's ``ssh_config``, so
ProxyJump, identities, agents, Kerberos and per-host options keep working. ``-F`` also reaches the jump hosts'
ssh processes, which ``-o`` options would not.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Endpoint
from .errors import LaunchError, UsageError

__all__ = ["SSHSettings", "SSHTransport", "explain_ssh_failure", "runtime_dir"]


def runtime_dir() -> Path:
    """A private directory for rik's control sockets and state: short (Unix socket paths are limited), 0700."""
    candidates = []
    if os.environ.get("RIK_RUNTIME_DIR"):
        candidates.append(Path(os.environ["RIK_RUNTIME_DIR"]))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and len(xdg) < 40:
        candidates.append(Path(xdg) / "rik")
    candidates.append(Path(tempfile.gettempdir()) / f"rik-{os.getuid()}")
    for path in candidates:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = path.stat()
        except OSError:
            continue
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            try:
                os.chmod(path, 0o700)
                info = path.stat()
            except OSError:
                continue
            if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                continue
        return path
    raise LaunchError("no private runtime directory for rik: set RIK_RUNTIME_DIR to a directory only you can use")


@dataclass(frozen=True, kw_only=True)
class SSHSettings:
    ssh_config: str | None = None
    host_keys: str = "strict"  # strict | accept-new
    askpass: str | None = None
    control_persist: int = 60
    connect_timeout: int = 15


class SSHTransport:
    """Builds ssh argv and the environment to run them in. It starts no process itself."""

    def __init__(self, settings: SSHSettings, *, program: str = "ssh") -> None:
        self.settings = settings
        found = shutil.which(program)
        if not found:
            raise LaunchError("no ssh client found: install OpenSSH (e.g. `apt install openssh-client`)")
        self.program = found
        self.dir = runtime_dir()
        self.config_path = self._write_config()
        self.tunnel_config_path = self._write_config(master=False)

    def _write_config(self, master: bool = True) -> Path:
        s = self.settings
        lines = [
            "# rik's ssh settings for its kernels; the user's own configuration is included below.",
            f"ControlPath {self.dir}/cm-%C",
            # The job's session makes (and shares) one master per host; a tunnel only uses existing masters for
            # its jump hops, so that none of its processes outlives it holding the kernel's old connections.
            "ControlMaster auto" if master else "ControlMaster no",
            f"ControlPersist {s.control_persist}",
            "ServerAliveInterval 5",
            "ServerAliveCountMax 3",
            f"ConnectTimeout {s.connect_timeout}",
            f"StrictHostKeyChecking {'accept-new' if s.host_keys == 'accept-new' else 'yes'}",
            "LogLevel ERROR",
        ]
        if not self.askpass_program():
            lines.append("BatchMode yes")
        includes = []
        if s.ssh_config:
            path = Path(os.path.expanduser(s.ssh_config))
            if not path.is_file():
                raise UsageError(f"the kernel's ssh config {path} does not exist")
            includes.append(path.resolve())
        includes.append(Path.home() / ".ssh" / "config")
        includes.append(Path("/etc/ssh/ssh_config"))
        lines.extend(f'Include "{p}"' for p in includes if p.exists())
        text = "\n".join(lines) + "\n"
        # One file per distinct content: kernels with the same settings share it (and their connections).
        import hashlib

        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        path = self.dir / f"ssh-{digest}.conf"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        return path

    def askpass_program(self) -> str | None:
        program = self.settings.askpass or os.environ.get("RIK_ASKPASS")
        if program:
            return program
        if os.environ.get("SSH_ASKPASS") and os.environ.get("SSH_ASKPASS_REQUIRE") == "force":
            return os.environ["SSH_ASKPASS"]
        return None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        program = self.askpass_program()
        if program:
            env["SSH_ASKPASS"] = program
            env["SSH_ASKPASS_REQUIRE"] = "force"
            env.setdefault("DISPLAY", ":0")
        return env

    def base(self, *, tunnel: bool = False) -> list[str]:
        return [self.program, "-F", str(self.tunnel_config_path if tunnel else self.config_path)]

    def destination(self, target: Endpoint, chain: Sequence[Endpoint]) -> list[str]:
        args: list[str] = []
        if chain:
            args += ["-J", ",".join(hop.jump for hop in chain)]
        if target.port is not None:
            args += ["-p", str(target.port)]
        args += ["--", target.host]
        return args

    def command(
        self,
        target: Endpoint,
        chain: Sequence[Endpoint],
        remote: Sequence[str],
        *,
        tty: bool = False,
        options: Sequence[str] = (),
    ) -> list[str]:
        """ssh argv that runs ``remote`` (an argv, quoted here, once) on ``target``."""
        args = [*self.base(), "-tt" if tty else "-T", *options]
        args += self.destination(target, chain)
        if remote:
            args.append(shlex.join(remote))
        return args

    def tunnel(
        self,
        target: Endpoint,
        chain: Sequence[Endpoint],
        forwards: Sequence[tuple[int | str, str]],
        *,
        control: Path | None = None,
    ) -> list[str]:
        """One ssh process that forwards local ports (127.0.0.1 only) to remote ``host:port`` or socket paths.

        It has its own connection (not the shared master), so a tunnel can die and come back while the kernel's
        session, and the kernel, carry on; its authentication still goes through the jump hosts' masters. With
        ``control`` it listens on that private socket (nobody else's master), so that :meth:`forward` can add
        forwards to this very process later; it stays in the foreground, whatever ControlPersist says.
        """
        args = [*self.base(tunnel=True), "-T", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes"]
        if control is None:
            args += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        else:
            args += ["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-o", f"ControlPath={_escape(control)}"]
        args += _forwards(forwards)
        # A session, not -N: sshd turns TCP_NODELAY on for a connection only when a session starts, and without
        # it the kernel's small replies wait for delayed ACKs (round trips measured 43 -> 6 ms). The remote `cat`
        # reads the tunnel's standard input, which the launcher holds open: it ends with the connection.
        return [*args, *self.destination(target, chain), "exec cat >/dev/null"]

    def forward(self, control: Path, target: Endpoint, forwards: Sequence[tuple[int | str, str]]) -> list[str]:
        """ssh argv that asks the tunnel listening on ``control`` to add local forwards; it exits at once."""
        args = [*self.base(tunnel=True), "-o", f"ControlPath={_escape(control)}", "-O", "forward"]
        return [*args, *_forwards(forwards), "--", target.host]

    def check_master(self, target: Endpoint, chain: Sequence[Endpoint]) -> list[str]:
        return [*self.base(), "-O", "check", *self.destination(target, chain)]


def _forwards(forwards: Sequence[tuple[int | str, str]]) -> list[str]:
    """``-L`` options: a local port binds 127.0.0.1 only; a local path is a Unix socket (rik's own relays)."""
    args: list[str] = []
    for local, remote in forwards:
        args += ["-L", f"{local}:{remote}" if isinstance(local, str) else f"127.0.0.1:{local}:{remote}"]
    return args


def _escape(path: Path) -> str:
    """A path for ControlPath, where ssh expands ``%`` tokens."""
    return str(path).replace("%", "%%")


_SSH_FAILURES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED.*?(?:for|Host key for) (\S+?) has changed", re.S),
        "the host key of {0} has CHANGED: if the host was really reinstalled, remove its old key with "
        "`ssh-keygen -R {0}`; otherwise someone may be intercepting the connection",
    ),
    (
        re.compile(r"No \S+ host key is known for (\S+?) and you have requested strict checking"),
        "the host key of {0} is not known: connect once with `ssh {0}` and check the fingerprint, or make the "
        "kernel with --host-keys=accept-new to trust it on first use",
    ),
    (
        re.compile(r"Host key verification failed"),
        "a host key could not be verified: connect once with ssh to check it, or use --host-keys=accept-new",
    ),
    (
        re.compile(r"ssh: Could not resolve hostname (\S+?):"),
        "cannot resolve host name {0}: check --host / --tunnel-hosts",
    ),
    (
        re.compile(r"ssh: connect to host (\S+) port (\d+): (.+)"),
        "cannot reach {0} port {1}: {2}",
    ),
    (
        re.compile(r"Connection timed out during banner exchange|Connection to (\S+) port \d+ timed out"),
        "the connection timed out: is the host up and reachable?",
    ),
    (
        re.compile(r"(\S+): Permission denied \(([^)]*)\)"),
        "authentication to {0} failed ({1}): check the user name and keys; for a password, passphrase or "
        "one-time code give the kernel an askpass program (--askpass PROGRAM or SSH_ASKPASS with "
        "SSH_ASKPASS_REQUIRE=force)",
    ),
    (
        re.compile(r"Permission denied \(([^)]*)\)"),
        "authentication failed ({0}): check the user name and keys; for a password, passphrase or one-time code "
        "give the kernel an askpass program (--askpass PROGRAM or SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force)",
    ),
    (
        re.compile(r"channel \d+: open failed: administratively prohibited"),
        "port forwarding is disabled on a host of the chain (sshd AllowTcpForwarding / "
        "AllowStreamLocalForwarding): ask its administrators, or run `rik doctor`",
    ),
    (
        re.compile(r"Could not request local forwarding|cannot listen to port: (\d+)"),
        "a local port for the kernel could not be bound",
    ),
]


def explain_ssh_failure(output: str) -> str | None:
    """One readable line for what ssh printed when it failed, or ``None`` when nothing is recognised."""
    for pattern, message in _SSH_FAILURES:
        m = pattern.search(output)
        if m:
            return message.format(*m.groups())
    return None
