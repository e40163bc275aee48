"""Log in once, then run ssh: the helper :class:`rik.ssh.SSHTransport` puts in front of an ssh command when the
master connection to its host is not up.

It runs as a script (``python -I -S sshlogin.py SPEC SSH-ARGV...``, standard library only, nothing of rik imported)
in the launcher's child process. It takes a lock for every host of the route (files in rik's private runtime
directory, always in the same order), looks again whether the master is up (another kernel may have made it while
this one waited), and if not makes it with ``ssh -N -f``, which returns once the masters of every hop are up, and
starts one short session on each jump host's master (``SSHTransport.wake``: TCP_NODELAY along the chain). Then it
releases the locks and ``exec``s the ssh command, which rides the masters. So kernels started at once log in to each
host once, not once each. When the login fails, ssh's own words are passed on and the status is ssh's 255.

SPEC is JSON: ``{"control": control socket path, "locks": [lock file paths], "login": ssh argv, "wake": [ssh argv]}``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def master_up(path: str) -> bool:
    """Whether a master listens on the control socket ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def wake(commands: list[list[str]], limit: float = 10.0) -> None:
    """Start ``commands`` (one short session on each jump host's master, see ``SSHTransport.wake``) without
    waiting for them: a detached grandchild runs them, ends any still running after ``limit`` seconds (a gateway
    whose forced command never returns), and exits; nobody is left a zombie."""
    if not commands:
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.closerange(3, 1 << 16)  # the host locks, held by the login: the next kernel must not wait on us
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                procs = [subprocess.Popen(argv, stdin=null, stdout=null, stderr=null) for argv in commands]
                deadline = time.monotonic() + limit
                for proc in procs:
                    try:
                        proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    command = argv[1:]
    held = []
    for path in sorted(spec["locks"]):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    if not master_up(spec["control"]):
        # ssh's messages go to a file, not a pipe: the masters' jump processes inherit it and live on.
        with tempfile.TemporaryFile(dir=os.path.dirname(spec["control"])) as out:
            status = subprocess.Popen(spec["login"], stdin=subprocess.DEVNULL, stdout=out, stderr=out).wait()
            if status != 0:
                out.seek(0)
                os.write(2, out.read())
                return 255
        wake(spec.get("wake") or [])
    for fd in held:
        os.close(fd)
    os.execv(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
