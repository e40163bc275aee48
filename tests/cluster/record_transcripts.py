#!/usr/bin/env python3
"""Record what real SLURM / Grid Engine / OpenPBS interactive jobs print, for rik's parser tests.

Run as root on a machine where tests/cluster/up has brought the test cluster up:

    python3 tests/cluster/record_transcripts.py [--out tests/data/transcripts] [NAME ...]

Each transcript is one interactive job started the way rik starts it: `ssh -tt` as user rik from
the root namespace through rik-gw to rik-front (client config $RIK_CLUSTER_DIR/ssh_config), under a
local pseudo-terminal.  Every byte read from the terminal is written as captured (\\r included), after
a header:

    # command: <the command run on rik-front>
    # exit: <exit status of ssh = of the scheduler client>
    # note: <how it was driven>

Standard library only (no pexpect on the test machines).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

STATE = os.environ.get("RIK_CLUSTER_DIR", "/run/rik-testcluster")
SSH = ["ssh", "-F", f"{STATE}/ssh_config", "-o", "LogLevel=ERROR", "-J", "rik-gw"]


def remote(cmd: str, timeout: float = 30) -> str:
    """Run CMD on rik-front as rik without a terminal; return stdout (raise on failure)."""
    res = subprocess.run(
        [*SSH, "rik-front", cmd], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@dataclass
class Step:
    kind: str  # expect | send | run | sleep | eof
    arg: object = None
    timeout: float = 60


@dataclass
class Transcript:
    name: str
    command: str
    steps: list[Step]
    note: str
    setup: str | None = None  # remote command before; stdout (stripped) -> vars["setup"]
    cleanup: str | None = None  # remote command after (formatted with vars)
    tty: bool = True  # False: plain `ssh` with stdout+stderr on one pipe, stdin /dev/null
    vars: dict = field(default_factory=dict)


class Session:
    def __init__(self, command: str, tty: bool = True):
        self.buf = b""
        self.pos = 0
        if tty:
            self.pid, self.fd = pty.fork()
            if self.pid == 0:  # child: ssh on the pty's slave side
                os.execvp("ssh", [*SSH, "-tt", "rik-front", command])
        else:
            # No terminal anywhere: what a launcher that pipes a script into ssh sees (no \r added).
            r, w = os.pipe()
            self.pid = os.fork()
            if self.pid == 0:
                nul = os.open(os.devnull, os.O_RDONLY)
                os.dup2(nul, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                os.close(r)
                os.execvp("ssh", [*SSH, "rik-front", command])
            os.close(w)
            self.fd = r

    def _read(self, deadline: float) -> bool:
        """Read what is there until DEADLINE; False at EOF."""
        left = max(0.0, deadline - time.monotonic())
        r, _, _ = select.select([self.fd], [], [], left)
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the slave side closed
            return False
        if not data:
            return False
        self.buf += data
        return True

    def expect(self, pattern: bytes, timeout: float) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} after {timeout}s; got {self.buf[self.pos :]!r}")
            if not self._read(min(deadline, time.monotonic() + 0.2)):
                m = rx.search(self.buf, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise EOFError(f"EOF before {pattern!r}; got {self.buf[self.pos :]!r}")

    def settle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._read(deadline):
            pass

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait_eof(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._read(deadline):
                break
        else:
            os.kill(self.pid, signal.SIGTERM)
            raise TimeoutError(f"no EOF after {timeout}s; got {self.buf[self.pos :]!r}")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def record(t: Transcript, outdir: str) -> str:
    v = dict(t.vars)
    if t.setup:
        v["setup"] = remote(t.setup).strip()
    s = Session(t.command.format(**v), t.tty)
    code = None
    t_start = t_run = time.monotonic()
    ran = False
    try:
        for st in t.steps:
            if st.kind == "expect":
                m = s.expect(st.arg, st.timeout)
                v.update({k: x.decode() for k, x in m.groupdict().items() if x is not None})
            elif st.kind == "send":
                s.send(st.arg.format(**v).encode() if isinstance(st.arg, str) else st.arg)
            elif st.kind == "run":
                remote(st.arg.format(**v))
                t_run, ran = time.monotonic(), True
            elif st.kind == "sleep":
                s.settle(st.arg)
            elif st.kind == "eof":
                code = s.wait_eof(st.timeout)
        if code is None:
            code = s.wait_eof(60)
        t_end = time.monotonic()
    finally:
        if t.cleanup:
            try:
                remote(t.cleanup.format(**v))
            except Exception as exc:  # keep the transcript; say what was left behind
                print(f"{t.name}: cleanup failed: {exc}", file=sys.stderr)
    note = t.note
    kinds = [st.kind for st in t.steps]
    if ran and kinds[-2:] == [R, EOF]:  # how long the client took to notice the scancel/qdel
        note += f"; it ended {t_end - t_run:.1f} s after that command returned"
    else:
        note += f"; {t_end - t_start:.1f} s from start to end"
    path = os.path.join(outdir, t.name)
    with open(path, "wb") as f:
        f.write(f"# command: {t.command.format(**v)}\n# exit: {code}\n# note: {note}\n".encode())
        # (the header is written after the run: the exit status is known only then)
        f.write(s.buf)
    return f"{t.name}: exit {code}, {len(s.buf)} bytes"


E, S, R, P, EOF = "expect", "send", "run", "sleep", "eof"
# Values computed by the job's shell (the pty echoes what is typed, so match only on output).
PROBE_SLURM = "echo RIK-PROBE node=$SLURMD_NODENAME job=$SLURM_JOB_ID host=$(hostname)\n"
PROBE_SGE = "echo RIK-PROBE host=$(hostname) nslots=${{NSLOTS:-unset}} job=${{JOB_ID:-unset}}\n"
VIA = "ssh -tt rik-front as rik (through rik-gw) under a local pty"
FILLER = "sbatch --parsable -p tiny -J rik-filler -o /dev/null --wrap 'sleep 600'"
SGE_FILLER = "qsub -terse -b y -l tiny -N rik-filler -o /dev/null -j y sleep 600"
# OpenPBS (tests/cluster/pbs.sh): by full path, Grid Engine owns /usr/bin/qsub.  The filler holds every CPU of
# rik-c2; 64 CPUs is more than any node has, so such a job never starts.
PBS = "/opt/pbs/bin"
PROBE_PBS = "echo RIK-PROBE host=$(hostname) job=$PBS_JOBID name=$PBS_JOBNAME ncpus=$NCPUS\n"
PBS_FILLER = f"{PBS}/qsub -N rik-filler -o /dev/null -e /dev/null -l select=1:ncpus=4:host=rik-c2 -- /bin/sleep 600"
PBS_NEVER = "-l select=1:ncpus=64"


def transcripts() -> list[Transcript]:
    prompt = rb"\$ "
    return [
        Transcript(
            "slurm-22.05-srun-pty-v.txt",
            "srun -J rik -v --pty bash -i",
            [
                Step(E, rb"tasks started"),
                Step(E, prompt, 30),
                Step(S, PROBE_SLURM),
                Step(E, rb"RIK-PROBE node=rik-c\d job=\d+ host=rik-c\d"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; resources free; typed the RIK-PROBE line and exit at the prompt",
        ),
        Transcript(
            "slurm-22.05-srun-queued.txt",
            "srun -J rik -v -p tiny --pty bash -i",
            [
                Step(E, rb"queued and waiting for resources"),
                Step(P, 2),
                Step(R, "scancel {setup}"),
                Step(E, rb"tasks started", 30),
                Step(E, prompt, 30),
                Step(S, PROBE_SLURM),
                Step(E, rb"RIK-PROBE node=rik-c\d"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; partition tiny filled first by `{FILLER}`, which was scancel'd ~2 s after the queued line",
            setup=FILLER,
            cleanup="scancel {setup} || true",
        ),
        Transcript(
            "slurm-22.05-srun-bad-partition.txt",
            "srun -J rik -v -p nosuch --pty bash -i",
            [Step(EOF, None, 30)],
            f"{VIA}; partition nosuch does not exist",
        ),
        Transcript(
            "slurm-22.05-srun-cancelled-pending.txt",
            "srun -J rik -v -p tiny --pty bash -i",
            [
                Step(E, rb"job (?P<job>\d+) queued and waiting for resources"),
                Step(P, 2),
                Step(R, "scancel {job}"),
                Step(EOF, None, 60),
            ],
            f"{VIA}; partition tiny filled by `{FILLER}`; the waiting job was scancel'd by id",
            setup=FILLER,
            cleanup="scancel {setup} || true",
        ),
        Transcript(
            "slurm-22.05-srun-cancelled-running.txt",
            "srun -J rik -v --pty bash -i",
            [
                Step(E, rb"tasks started"),
                Step(E, prompt, 30),
                Step(S, PROBE_SLURM),
                Step(E, rb"RIK-PROBE node=rik-c\d job=(?P<job>\d+)"),
                Step(E, prompt),
                Step(R, "scancel {job}"),
                Step(EOF, None, 60),
            ],
            f"{VIA}; the running job was scancel'd by id at the prompt",
        ),
        Transcript(
            "slurm-22.05-srun-stdin.txt",
            "printf 'hostname\\necho \"job=$SLURM_JOB_ID\"\\ntty || true\\n' | srun -J rik -v -N1 /bin/sh -s",
            [Step(EOF, None, 30)],
            "plain ssh rik-front as rik (through rik-gw), no tty anywhere, stdout and stderr on one pipe;"
            " script on srun's stdin (no --pty): it runs on the node, stdin forwarded",
            tty=False,
        ),
        Transcript(
            "sge-8.1.9-qlogin.txt",
            "qlogin -verbose -now n -N rik",
            [
                Step(E, rb"Establishing builtin session to host rik-c\d"),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; waited for the prompt before typing the RIK-PROBE line and exit",
        ),
        Transcript(
            "sge-8.1.9-qlogin-plain.txt",
            "qlogin -now n -N rik",
            [
                Step(E, rb"Establishing builtin session to host rik-c\d"),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; without -verbose; waited for the prompt before typing",
        ),
        Transcript(
            "sge-8.1.9-qrsh.txt",
            "qrsh -verbose -now n -N rik -pe smp 2",
            [
                Step(E, rb"Establishing builtin session to host rik-c\d"),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d nslots=\w+"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; qrsh without a command = interactive login (like qlogin): NSLOTS/JOB_ID are NOT set in it",
        ),
        Transcript(
            "sge-8.1.9-qrsh-pty-bash.txt",
            "qrsh -verbose -now n -N rik -pe smp 2 -pty y bash -i",
            [
                Step(E, rb"Establishing builtin session to host rik-c\d"),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d nslots=\w+"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; qrsh with a command and -pty y: a job shell with NSLOTS, PE and JOB_ID set",
        ),
        Transcript(
            "sge-8.1.9-qrsh-command.txt",
            "qrsh -verbose -now n -N rik -pe smp 2 'echo RIK-PROBE host=$(hostname) nslots=$NSLOTS pe=$PE job=$JOB_ID'",
            [Step(EOF, None, 60)],
            f"{VIA}; qrsh with a command and no -pty: no job shell prompt, the command's output only",
        ),
        Transcript(
            "sge-8.1.9-qlogin-bad-queue.txt",
            "qlogin -verbose -now n -N rik -q nosuch.q",
            [Step(EOF, None, 30)],
            f"{VIA}; queue nosuch.q does not exist",
        ),
        Transcript(
            "sge-8.1.9-qlogin-qdel.txt",
            "qlogin -verbose -now n -N rik",
            [
                Step(E, rb"Your interactive job (?P<job>\d+) has been successfully scheduled"),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d"),
                Step(E, prompt),
                Step(R, "qdel {job}"),
                Step(EOF, None, 60),
            ],
            f"{VIA}; the running job was qdel'd by id at the prompt",
        ),
        Transcript(
            "sge-8.1.9-qlogin-queued.txt",
            "qlogin -verbose -now n -N rik -l tiny",
            [
                Step(E, rb"waiting for interactive job to be scheduled"),
                Step(P, 3),
                Step(R, "qdel {setup}"),
                Step(E, rb"Establishing builtin session to host rik-c\d", 60),
                Step(E, prompt, 30),
                Step(P, 0.5),
                Step(S, PROBE_SGE),
                Step(E, rb"RIK-PROBE host=rik-c\d"),
                Step(E, prompt),
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; queue tiny.q filled first by `{SGE_FILLER}`, which was qdel'd ~3 s after the waiting line",
            setup=SGE_FILLER,
            cleanup="qdel {setup} 2>/dev/null || true",
        ),
        Transcript(
            "sge-8.1.9-qlogin-qdel-pending.txt",
            "qlogin -verbose -now n -N rik -l tiny",
            [
                Step(E, rb"Your job (?P<job>\d+) \(\"rik\"\) has been submitted"),
                Step(E, rb"waiting for interactive job to be scheduled"),
                Step(P, 2),
                Step(R, "qdel {job}"),
                Step(EOF, None, 120),
            ],
            f"{VIA}; tiny.q filled by `{SGE_FILLER}`; the waiting job was qdel'd by id (qlogin notices late)",
            setup=SGE_FILLER,
            cleanup="qdel {setup} 2>/dev/null || true",
        ),
        *pbs_transcripts(prompt),
    ]


def pbs_transcripts(prompt: bytes) -> list[Transcript]:
    ready = rb"qsub: job (?P<job>\S+) ready"
    probe = [Step(E, prompt, 30), Step(P, 0.5), Step(S, PROBE_PBS), Step(E, rb"RIK-PROBE host=rik-c\d job=\S+"), Step(E, prompt)]
    return [
        Transcript(
            "pbs-23.06-qsub-I.txt",
            f"{PBS}/qsub -I -N rik -l ncpus=2",
            [Step(E, ready), *probe, Step(S, "exit\n"), Step(EOF, None, 30)],
            f"{VIA}; resources free; typed the RIK-PROBE line and exit at the prompt",
        ),
        Transcript(
            "pbs-23.06-qsub-I-waits-for-busy-node.txt",
            f"{PBS}/qsub -I -N rik -l select=1:host=rik-c2",
            [
                Step(E, rb"qsub: waiting for job \S+ to start"),
                Step(P, 3),
                Step(R, PBS + "/qdel {setup}"),
                Step(E, ready, 60),
                *probe,
                Step(S, "exit\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; rik-c2 filled first by `{PBS_FILLER}`, which was qdel'd ~3 s after the waiting line",
            setup=PBS_FILLER,
            cleanup=PBS + "/qdel {setup} 2>/dev/null || true",
        ),
        Transcript(
            "pbs-23.06-qsub-I-queued-deleted.txt",
            f"{PBS}/qsub -I -N rik {PBS_NEVER}",
            [Step(E, rb"qsub: waiting for job (?P<job>\S+) to start"), Step(P, 2), Step(R, PBS + "/qdel {job}"), Step(EOF, None, 60)],
            f"{VIA}; 64 CPUs: the job can never start; it was qdel'd by id ~2 s after the waiting line (qsub notices late)",
        ),
        Transcript(
            "pbs-23.06-qsub-I-ctrl-c-waiting.txt",
            f"{PBS}/qsub -I -N rik {PBS_NEVER}",
            [
                Step(E, rb"qsub: waiting for job \S+ to start"),
                Step(P, 1),
                Step(S, b"\x03"),
                Step(E, rb"terminate the job and exit"),
                Step(S, "y\n"),
                Step(EOF, None, 30),
            ],
            f"{VIA}; 64 CPUs: the job can never start; Ctrl-C while waiting, answered y",
        ),
        Transcript(
            "pbs-23.06-qsub-I-qdel-running.txt",
            f"{PBS}/qsub -I -N rik",
            [Step(E, ready), *probe, Step(R, PBS + "/qdel {job}"), Step(EOF, None, 60)],
            f"{VIA}; the running job was qdel'd by id at the prompt",
        ),
        Transcript(
            "pbs-23.06-qsub-I-unknown-queue.txt",
            f"{PBS}/qsub -I -N rik -q nosuch",
            [Step(EOF, None, 30)],
            f"{VIA}; queue nosuch does not exist",
        ),
        Transcript(
            "pbs-23.06-qsub-I-unknown-resource.txt",
            f"{PBS}/qsub -I -N rik -l nosuchresource=1",
            [Step(EOF, None, 30)],
            f"{VIA}; resource nosuchresource does not exist",
        ),
        Transcript(
            "pbs-23.06-qsub-I-walltime.txt",
            f"{PBS}/qsub -I -N rik -l walltime=00:00:10",
            [Step(E, ready), Step(E, prompt, 30), Step(P, 0.5), Step(S, "sleep 300\n"), Step(EOF, None, 90)],
            f"{VIA}; a 10 s walltime; `sleep 300` typed at the prompt; the mom ends the job at its limit",
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "transcripts"))
    ap.add_argument("names", nargs="*", help="file names (or prefixes) to record; default: all")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    failed = 0
    for t in transcripts():
        if a.names and not any(t.name.startswith(n) for n in a.names):
            continue
        try:
            print(record(t, a.out))
        except Exception as exc:
            failed += 1
            print(f"{t.name}: FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
