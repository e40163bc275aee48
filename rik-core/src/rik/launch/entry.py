"""The launcher's command line: ``python -m rik --kernel-config JSON [-f] FILE`` (and VS Code's extra flags)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import KernelConfig
from ..errors import RikError
from .early import Basis, Early, basis, session
from .logs import log, redact, setup_logging
from .tunnel import CHANNELS

__all__ = ["main", "parse_args"]

CHANNEL_KEYS = CHANNELS

_VSCODE_FLAGS = {
    "ip": "ip",
    "shell": "shell_port",
    "iopub": "iopub_port",
    "stdin": "stdin_port",
    "control": "control_port",
    "hb": "hb_port",
    "transport": "transport",
    "Session.key": "key",
    "Session.signature_scheme": "signature_scheme",
    "f": "connection_file",
}


def _unquote(value: str) -> str:
    """VS Code writes ``--transport="tcp"`` and ``--Session.key=b"..."`` with the quotes inside the argv word."""
    if value[:2] in ('b"', "b'") and len(value) >= 3 and value[-1] == value[1]:
        return value[2:-1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_args(argv: Sequence[str]) -> tuple[KernelConfig, str, dict[str, Any]]:
    """``--kernel-config JSON [-f] FILE``, plus the flags VS Code appends to Python kernels
    (``--ip= --shell= --iopub= --stdin= --control= --hb= --transport= --Session.key= --f=``): those win over the
    file, and rebuild the connection when the file is missing or empty (a name VS Code gave but never wrote)."""
    parser = argparse.ArgumentParser(prog="python -m rik", add_help=True, allow_abbrev=False)
    parser.add_argument("--kernel-config", required=True)
    parser.add_argument("-f", dest="connection_flag")
    parser.add_argument("connection_file", nargs="?")
    known, extra = parser.parse_known_args(list(argv))
    config = KernelConfig.loads(known.kernel_config)
    overrides: dict[str, Any] = {}
    for word in extra:
        m = re.match(r"--([\w.]+)=(.*)$", word, re.S)
        if m and m.group(1) in _VSCODE_FLAGS:
            name = _VSCODE_FLAGS[m.group(1)]
            value: Any = _unquote(m.group(2))
            if name.endswith("_port"):
                try:
                    value = int(value)
                except ValueError:
                    raise RikError(f"{word}: not a port number") from None
            overrides[name] = value
    flag_file = overrides.pop("connection_file", None)
    path = known.connection_flag or known.connection_file or flag_file
    if not path:
        raise RikError("no connection file given")
    complete = all(k in overrides for k in CHANNEL_KEYS) and "key" in overrides
    try:
        text = Path(path).read_text()
        connection = json.loads(text) if text.strip() or not complete else {}
    except (OSError, ValueError) as exc:
        if not complete:
            raise RikError(f"cannot read the connection file {path}: {exc}") from None
        connection = {}
    if not connection:  # rebuilt from the flags alone; written for a kernel that reads this very file
        connection = {"transport": "tcp", "ip": "127.0.0.1", "signature_scheme": "hmac-sha256", **overrides}
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(connection, fh)
    connection.update(overrides)
    return config, path, connection


def main(argv: Sequence[str] | None = None, pre: Early | None = None) -> int:
    """``pre``: the session :mod:`rik.launch.early` started from the raw configuration, taken over when the full
    configuration has the same host, jump hosts and ssh settings, else ended."""
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging(verbose="--verbose" in args or bool(os.environ.get("RIK_DEBUG")))
    try:
        config, path, connection = parse_args(args)
    except RikError as exc:
        if pre is not None:
            pre.drop()
        log.error("%s", exc)
        return 2
    except BaseException:
        if pre is not None:
            pre.drop()
        raise
    setup_logging(verbose=config.verbose or bool(os.environ.get("RIK_DEBUG")))
    key = connection.get("key")
    if isinstance(key, str) and key:
        redact.secrets.append(key)
    same = basis(config.host, config.tunnel_hosts, config.ssh_config, config.host_keys, config.askpass)
    early = pre if pre is not None and pre.basis == same else None
    if early is None:
        if pre is not None:
            pre.drop()
        early = _early_session(config, same)
    try:
        from .launcher import Launcher, find_adoptable, find_session
    except BaseException:
        if early is not None:
            early.drop()
        raise

    try:
        adopt = None
        reattach = False
        # Started again with the same connection file and key: a restart, in the job the last kernel left.
        adopt = find_adoptable(path, str(key or ""))
        session_name = os.environ.get("JPY_SESSION_NAME")
        if adopt is None and session_name:
            # The notebook's kernel from before a Jupyter server restart (the provisioner gave us its key).
            adopt = find_session(session_name, str(key or ""))
            reattach = adopt is not None
        pair = (early.ssh, early.proc) if early is not None else None
        launcher = Launcher(config, path, connection, adopt=adopt, reattach=reattach, early=pair)
    except RikError as exc:
        if early is not None:
            early.drop()
        log.error("%s", exc)
        return 2
    except BaseException:
        if early is not None:
            early.drop()
        raise
    return launcher.run()


def _early_session(config: KernelConfig, made: Basis) -> Early | None:
    """The ssh transport, and the session's ssh already started when the submit host's master is up: for a
    launcher run without ``python -m rik``'s first step (:mod:`rik.launch.early`), or whose first step started it
    for other settings. Without a master (a cold start) the launcher starts the session itself, behind the one
    login per host (rik.sshlogin)."""
    submit = config.endpoint()
    if submit is None:
        return None
    from ..ssh import SSHSettings

    try:
        settings = SSHSettings(ssh_config=config.ssh_config, host_keys=config.host_keys, askpass=config.askpass)
        return Early(*session(submit, config.chain(), settings), made)
    except (RikError, OSError):
        return None  # the launcher meets it again, and says so
