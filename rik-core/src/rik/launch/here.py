"""A kernel on this machine (``--interface local``): the launcher becomes the kernel.

A local kernel needs nothing of a remote kernel's machinery: there is no connection to lose, no job to keep, and no
port to relay (the kernel binds the frontend's own). So when the kernelspec is a plain local one, the launcher
``exec``s the kernel's command in its own process, ~30 ms after its Python started, instead of loading the full
launcher (~110 ms of imports before the kernel's shell) and then living as long as the kernel only to pass its
output on. What the full launcher gave a local kernel, it still gets:

- Jupyter's environment; with ``--remote-precmd``, the user's login shell runs the pre-command first;
- the working directory: ``--workdir``, else the one Jupyter gave (home when that no longer exists);
- default signal dispositions: a SIGINT or SIGHUP ignored by a ``nohup``ed Jupyter, and the SIGPIPE Python
  ignores, are not passed on, so an interrupt in signal mode reaches the kernel (jupyter_client signals the process,
  which now is the kernel);
- its output on standard error, where the launcher wrote it;
- a kernel whose program is missing gets one line that says so, and status 127.

Anything else (VS Code's flags, settings this module does not know, a newer config, ``--verbose``) goes to the full
launcher, which checks and reports it. Standard library only: nothing of rik is imported on this path.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys

__all__ = ["exec_local"]

#: The settings a local kernel's config may carry that this path honours, or that do not apply to it here
#: (``grace``, ``transport``; ``interrupt_mode`` is read by the frontend from kernel.json, not by the launcher).
_HONOURED = frozenset(
    {"v", "interface", "kernel_cmd", "name", "language", "workdir", "precmd", "grace", "transport", "interrupt_mode"}
)
_RESET = ("SIGINT", "SIGHUP", "SIGTERM", "SIGQUIT", "SIGPIPE", "SIGXFSZ", "SIGUSR1", "SIGUSR2")


def _plain(argv: list[str]) -> tuple[dict[str, object], str] | None:
    """The config and connection file of a plain local kernelspec's argv, else ``None``."""
    if len(argv) not in (3, 4) or argv[0] != "--kernel-config":
        return None
    if len(argv) == 4 and argv[2] != "-f":
        return None
    if len(argv) == 3 and argv[2].startswith("-"):
        return None
    try:
        config = json.loads(argv[1])
    except ValueError:
        return None
    if not isinstance(config, dict) or config.get("interface") != "local" or config.get("v", 1) != 1:
        return None
    if set(config) - _HONOURED or not isinstance(config.get("kernel_cmd"), str):
        return None
    if any(not isinstance(config.get(k, ""), str) for k in ("workdir", "precmd")):
        return None
    path = argv[-1]
    try:
        if os.path.getsize(path) == 0:
            return None  # a connection file Jupyter named but never wrote: the full launcher's case
    except OSError:
        return None
    return config, path


def _command(config: dict[str, object], path: str) -> list[str]:
    words = [
        path if w == "{connection_file}" else w.replace("{connection_file}", path)
        for w in shlex.split(str(config["kernel_cmd"]))
    ]
    precmd = config.get("precmd")
    if not precmd:
        return words
    shell = os.environ.get("SHELL") or "/bin/sh"
    login = [] if shell.endswith("csh") else ["-l"]  # csh-family shells take -l only alone
    return [shell, *login, "-c", f"{precmd}\nexec {shlex.join(words)}"]


def exec_local(argv: list[str]) -> None:
    """Become the kernel of a plain local kernelspec (never returns then); return at once for anything else."""
    found = _plain(argv)
    if found is None:
        return
    config, path = found
    command = _command(config, path)
    if not command:
        return
    workdir = config.get("workdir")
    if workdir:
        try:
            os.chdir(str(workdir))
        except OSError:
            sys.stderr.write(f"rik: the working directory {workdir} does not exist on this machine\n")
            sys.exit(1)
    else:
        try:
            os.getcwd()
        except OSError:
            os.chdir(os.path.expanduser("~"))  # Jupyter's was removed meanwhile
    for name in _RESET:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"rik: cannot start the kernel: {command[0]}: {exc.strerror or exc}\n")
        sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)
