"""The SSH transport: the system's OpenSSH client, a chain of jump hosts, shared master connections, askpass.

rik never replaces the user's ssh setup: a small config file of rik's own settings is given with ``-F`` and then
``Include``s the kernel's ``--ssh-config``, the user's ``~/.ssh/config`` and the system's ``ssh_config``, so
ProxyJump, identities, agents, Kerberos and per-host options keep working. ``-F`` also reaches the jump hosts'
ssh processes, which ``-o`` options would not.

One login per host: every connection shares one master per host (``ControlMaster auto``). When the master of a
command's host is not up, the command is run through :mod:`rik.sshlogin`, which makes the masters under a lock per
host first, so kernels started at once log in once. A tunnel is a client of its host's master that never logs in
itself: its forwards are the master's (see :meth:`SSHTransport.tunnel`).

The masters of a chain close together: a master's persist time counts from the last connection that uses it, and a
hop's master is used by the jump process of the master behind it. So the config file (read by the jump processes
too) gives masters a short persist time (``hop_persist``), and only the host a command is for gets
``control_persist`` on its command line: when that master ends, its jump processes end, and the hops before it
follow within seconds instead of ``control_persist`` each.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .endpoint import Endpoint
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


class SSHSettings:
    """The ssh settings of a kernel. (A plain class: ``dataclasses`` would cost the launcher's first step ~11 ms of
    imports.)"""

    def __init__(
        self,
        *,
        ssh_config: str | None = None,
        host_keys: str = "strict",  # strict | accept-new
        askpass: str | None = None,
        control_persist: int = 60,  # the master of the host a command is for
        hop_persist: int = 3,  # the masters of the hops before it (held by the jump processes of those behind)
        connect_timeout: int = 15,
    ) -> None:
        self.ssh_config = ssh_config
        self.host_keys = host_keys
        self.askpass = askpass
        self.control_persist = control_persist
        self.hop_persist = hop_persist
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"SSHSettings({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


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
        self._resolved: dict[tuple[str, int | None], dict[str, str]] = {}

    def _write_config(self) -> Path:
        s = self.settings
        lines = [
            "# rik's ssh settings for its kernels; the user's own configuration is included below.",
            f"ControlPath {self.dir}/cm-%C",
            "ControlMaster auto",
            # Jump processes read this file: a hop's master ends soon after the master behind it (see above).
            f"ControlPersist {s.hop_persist}",
            # Masters bind the tunnels' Unix sockets: one left by a master that died must not block the next.
            "StreamLocalBindUnlink yes",
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

    def base(self) -> list[str]:
        return [self.program, "-F", str(self.config_path)]

    def persist(self, persist: bool = True) -> list[str]:
        """The persist time of the master this command may make for its host (its hops' come from the file)."""
        return ["-o", f"ControlPersist={self.settings.control_persist}"] if persist else []

    def resolved(self, target: Endpoint) -> dict[str, str]:
        """What ssh makes of ``target`` with these settings (``ssh -G``: aliases, ``HostName``, ``Port``,
        ``ControlPath``...), names lower-case; empty when ssh cannot say. Asked once per target."""
        key = (target.host, target.port)
        if key not in self._resolved:
            found: dict[str, str] = {}
            try:
                result = subprocess.run(
                    [*self.base(), "-G", *self.destination(target, ())],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                for line in result.stdout.splitlines():
                    name, _, value = line.partition(" ")
                    if value:
                        found.setdefault(name, value)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._resolved[key] = found
        return self._resolved[key]

    def control_path(self, target: Endpoint) -> str | None:
        """The control socket of ``target``'s master, as ssh computes it (``ssh -G``); ``None`` if unknown."""
        path = self.resolved(target).get("controlpath")
        return path if path and path != "none" else None

    def logged_in(
        self, argv: list[str], target: Endpoint, chain: Sequence[Endpoint], *, persist: bool = True
    ) -> list[str]:
        """``argv`` as is when ``target``'s master is up; else behind :mod:`rik.sshlogin`, which makes the masters
        of the route first, one login per host even for kernels started at once."""
        path = self.control_path(target)
        if path is None:
            return argv
        from .sshlogin import master_up

        if master_up(path):
            return argv
        login = [*self.base(), *self.persist(persist), "-T", "-N", "-f", *self.destination(target, chain)]
        locks = [str(self._lock(hop)) for hop in (*chain, target)]
        spec = json.dumps({"control": path, "locks": locks, "login": login, "wake": self.wake(chain)})
        from . import sshlogin

        return [sys.executable, "-I", "-S", str(Path(sshlogin.__file__)), spec, *argv]

    def wake(self, chain: Sequence[Endpoint]) -> list[list[str]]:
        """ssh argv that run one short session on each jump host's master, riding it (never logging in).

        sshd turns TCP_NODELAY on for a connection only when a session starts on it, and a jump host's connection
        carries only the forwarding of the next hop's, so without a session every small packet it passes back
        waits for the delayed ACK of the one before: ~44 ms per round trip through the chain, against ~3 ms with
        one. The session runs ``exit`` in the user's shell (not a login shell); where a gateway allows no
        session, it fails and nothing else changes."""
        args = [*self.base(), "-T", "-o", "ControlMaster=no", "-o", "ProxyCommand=false", "-o", "BatchMode=yes"]
        return [[*args, *self.destination(hop, ()), "exit"] for hop in chain]

    def _lock(self, host: Endpoint) -> Path:
        import hashlib

        digest = hashlib.sha1(f"{self.config_path}\0{host.jump}".encode()).hexdigest()[:16]
        return self.dir / f"lock-{digest}"

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
        persist: bool = True,
    ) -> list[str]:
        """ssh argv that runs ``remote`` (an argv, quoted here, once) on ``target``, riding its master (made first
        when it is not up). ``persist=False``: the master it makes ends with the masters behind it (a job's submit
        host, whose connection the tunnel to the job's node holds), not ``control_persist`` after the command."""
        args = [*self.base(), "-tt" if tty else "-T", *self.persist(persist), *options]
        args += self.destination(target, chain)
        if remote:
            args.append(shlex.join(remote))
        return self.logged_in(args, target, chain, persist=persist)

    def tunnel(
        self, target: Endpoint, chain: Sequence[Endpoint], forwards: Sequence[tuple[int | str, str]]
    ) -> list[str]:
        """One ssh process that forwards local ports (127.0.0.1 only) to remote ``host:port`` or socket paths.

        It is a client of ``target``'s master (made first when it is not up) and never logs in itself: when there
        is no master to ride it fails (``ProxyCommand=false``) instead of opening a connection of its own. The
        master binds the forwards and carries them; they stay with the master until :meth:`cancel` (a tunnel
        started again with the same forwards finds them there), and go with it. The process ends when the
        master does (a dead network: the master's keepalives), which is how the launcher sees the tunnel is gone; a
        shell around it then cancels its forwards, even when the launcher was killed.

        (A client in proxy mode, ``-O proxy``, would own its listeners, but OpenSSH's master ends when such a
        client goes while a channel of it is still opening, taking every connection to the host with it.)
        """
        args = [*self.base(), "-T", "-o", "ControlMaster=no", "-o", "ProxyCommand=false"]
        args += ["-o", "ExitOnForwardFailure=yes", *_forwards(forwards), *self.destination(target, ())]
        # A session, not -N: sshd turns TCP_NODELAY on for a connection only when a session starts, and without
        # it the kernel's small replies wait for delayed ACKs (round trips measured 43 -> 6 ms). The remote `cat`
        # reads the tunnel's standard input, which the launcher holds open: it ends with the connection.
        argv = self.logged_in([*args, "exec cat >/dev/null"], target, chain)
        # Its forwards go with it even when the launcher is killed: a shell that outlives the launcher's signals
        # cancels them once ssh has ended (its standard input, the launcher's pipe, closed).
        cancel = shlex.join(self.forward(target, forwards, cancel=True))
        script = f"trap '' HUP INT TERM; \"$@\"; s=$?; {cancel} >/dev/null 2>&1; exit $s"
        return ["/bin/sh", "-c", script, "rik-tunnel", *argv]

    def forward(
        self, target: Endpoint, forwards: Sequence[tuple[int | str, str]], *, cancel: bool = False
    ) -> list[str]:
        """ssh argv that asks ``target``'s master to add (or ``cancel``) local forwards; it exits at once."""
        args = [*self.base(), "-o", "ControlMaster=no", "-O", "cancel" if cancel else "forward"]
        return [*args, *_forwards(forwards), *self.destination(target, ())]

    def check_master(self, target: Endpoint, chain: Sequence[Endpoint]) -> list[str]:
        return [*self.base(), "-O", "check", *self.destination(target, chain)]


def _forwards(forwards: Sequence[tuple[int | str, str]]) -> list[str]:
    """``-L`` options: a local port binds 127.0.0.1 only; a local path is a Unix socket (rik's own relays)."""
    args: list[str] = []
    for local, remote in forwards:
        args += ["-L", f"{local}:{remote}" if isinstance(local, str) else f"127.0.0.1:{local}:{remote}"]
    return args


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
