"""The raw-SSH floor: the least a launcher can do to run ipykernel on another host and reach it.

A kernelspec runs ``python rawssh.py --host HOST [--jump HOPS] --ssh-config FILE {connection_file}``:

1. one ``ssh -N`` with one ``-L 127.0.0.1:P:127.0.0.1:P`` per channel starts at once (the same port numbers on the
   host: ipykernel binds the ports it is given on 127.0.0.1);
2. meanwhile one ``ssh HOST 'umask 077; cat > FILE'`` copies the connection file over its standard input (0600);
3. then one ``ssh HOST PYTHON -m ipykernel_launcher -f FILE`` runs the kernel (and removes FILE when it ends).

No master connection (every ssh authenticates on its own: the cold floor), no supervision, no retries, no job,
no clean-up beyond that: a floor to compare against, not a tool.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--jump", default="")
    parser.add_argument("--ssh-config", required=True)
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("connection_file")
    args = parser.parse_args()

    connection = Path(args.connection_file).read_text()
    ports = [int(json.loads(connection)[k]) for k in CHANNELS]
    remote_file = f"/tmp/rawbench-{uuid.uuid4().hex}.json"

    ssh = ["ssh", "-F", args.ssh_config, "-T", "-o", "BatchMode=yes"]
    if args.jump:
        ssh += ["-J", args.jump]

    children: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # message-mode interrupts never send SIGINT; jupyter_client may before a kill

    forwards = [arg for p in ports for arg in ("-L", f"127.0.0.1:{p}:127.0.0.1:{p}")]
    tunnel = subprocess.Popen([*ssh, "-N", "-o", "ExitOnForwardFailure=yes", *forwards, "--", args.host])
    children.append(tunnel)
    copy = subprocess.run(
        [*ssh, "--", args.host, f"umask 077 && cat > {remote_file}"], input=connection.encode(), check=False
    )
    if copy.returncode != 0:
        tunnel.terminate()
        return 1
    remote = f"{shlex.quote(args.python)} -m ipykernel_launcher -f {remote_file}; rm -f {remote_file}"
    kernel = subprocess.Popen([*ssh, "--", args.host, remote], stdin=subprocess.DEVNULL)
    children.append(kernel)
    status = kernel.wait()
    tunnel.terminate()
    tunnel.wait()
    return status


if __name__ == "__main__":
    sys.exit(main())
