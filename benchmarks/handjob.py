"""The hand-made scheduler floor: a kernel in a SLURM (``srun``) or Grid Engine (``qrsh``) job started the way a
user would without any launcher, through the same ssh chain as rik's kernels.

A kernelspec runs ``python handjob.py --scheduler slurm|sge --submit HOST [--jump HOPS] --ssh-config FILE
{connection_file}``:

1. one ``ssh SUBMIT 'umask 077; cat > FILE'`` copies the connection file over its standard input (0600; every test
   host shares /tmp, as cluster file systems do);
2. one ``ssh SUBMIT srun ... bash -c '...'`` (or ``qrsh ... '...'``) that prints the node and the job id, then
   runs ``python3 -m ipykernel_launcher -f FILE; rm -f FILE``;
3. as soon as the job prints its node, one ``ssh -N -J HOPS,SUBMIT NODE`` with one ``-L`` per channel.

No master connection, no login shell, no supervision: the least that gets a kernel in a job and reaches it.
On SIGTERM it ends its ssh processes and cancels the job by name.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduler", choices=("slurm", "sge"), required=True)
    parser.add_argument("--submit", required=True)
    parser.add_argument("--jump", default="")
    parser.add_argument("--ssh-config", required=True)
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("connection_file")
    args = parser.parse_args()

    connection = Path(args.connection_file).read_text()
    ports = [int(json.loads(connection)[k]) for k in CHANNELS]
    tag = uuid.uuid4().hex[:12]
    remote_file, name = f"/tmp/handbench-{tag}.json", f"hand-{tag}"
    ssh = ["ssh", "-F", args.ssh_config, "-T", "-o", "BatchMode=yes"]
    to_submit = [*ssh, *(["-J", args.jump] if args.jump else []), "--", args.submit]
    children: list[subprocess.Popen[bytes]] = []

    def end() -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        cancel = f"scancel --name {name}" if args.scheduler == "slurm" else f"qdel {name}"
        subprocess.run([*to_submit, cancel], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def stop(signum: int, frame: object) -> None:
        end()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    copy = subprocess.run([*to_submit, f"umask 077 && cat > {remote_file}"], input=connection.encode(), check=False)
    if copy.returncode != 0:
        return 1
    body = f"echo $(hostname) ${{SLURM_JOB_ID:-$JOB_ID}}; {args.python} -m ipykernel_launcher -f {remote_file}; rm -f {remote_file}"
    if args.scheduler == "slurm":
        job = f"srun --job-name {name} --nodes=1 --ntasks=1 --unbuffered bash -c {shlex.quote(body)}"
    else:  # qrsh joins its arguments into one command line for the node's shell
        job = f"qrsh -now n -N {name} {shlex.quote(body)}"
    kernel = subprocess.Popen([*to_submit, job], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    children.append(kernel)
    assert kernel.stdout is not None
    first = kernel.stdout.readline().decode().split()
    if len(first) != 2:
        print(f"the job printed {first!r}, not its node and id", file=sys.stderr)
        end()
        return 1
    node, job = first
    print(f"job {job} running on {node}", file=sys.stderr, flush=True)
    hops = ",".join(h for h in (args.jump, args.submit) if h)
    forwards = [arg for p in ports for arg in ("-L", f"127.0.0.1:{p}:127.0.0.1:{p}")]
    tunnel = subprocess.Popen([*ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-J", hops, *forwards, "--", node])
    children.append(tunnel)
    for line in kernel.stdout:  # the kernel's own output, as a launcher would pass it on
        os.write(1, line)
    status = kernel.wait()
    tunnel.terminate()
    tunnel.wait()
    return status


if __name__ == "__main__":
    sys.exit(main())
