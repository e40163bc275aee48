#!/usr/bin/python3
"""Self-test of rik's LSF emulator (a TEST FIXTURE) on the running test cluster; run as root
through selftest.sh.

Every interactive client runs the way rik runs it: ``ssh -tt`` as user rik from the root namespace
through rik-gw to rik-front (client config $RIK_CLUSTER_DIR/ssh_config), under a local pseudo-terminal.
What remains on the compute nodes is checked from /proc, by network namespace (ps on the node).

    selftest.py [--record DIR] [TEST ...]      # --record: write the parser transcripts into DIR

Standard library only.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

STATE = os.environ.get("RIK_CLUSTER_DIR", "/run/rik-testcluster")
SSH = ["ssh", "-F", f"{STATE}/ssh_config", "-o", "LogLevel=ERROR", "-J", "rik-gw"]
EMU = "/opt/rik-emulators"
BSUB, BKILL, BJOBS = (f"{EMU}/lsf/bin/{p}" for p in ("bsub", "bkill", "bjobs"))
SPOOL = "/var/spool/rik-emulators"
HEADER = "# emulated: strings from OpenLava's sources and IBM's LSF documentation (no LSF server can be obtained here)\n"
PROMPT = rb"\$ "


class Failed(Exception):
    pass


# ------------------------------------------------------------------------------------------ sessions
class Session:
    """One command on rik-front as rik, under `ssh -tt` on a local pty (200 columns: no wrapping)."""

    def __init__(self, command: str):
        self.command = command
        self.buf = b""
        self.pos = 0
        self.status = None
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvp("ssh", [*SSH, "-tt", "rik-front", command])
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))

    def _read(self, timeout: float) -> bool:
        r = select.select([self.fd], [], [], timeout)[0]
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def expect(self, pattern: bytes, timeout: float = 30) -> re.Match:
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.time()
            if (left <= 0 or not self._read(min(left, 0.5))) and not rx.search(self.buf, self.pos):
                raise Failed(f"timeout/EOF waiting for {pattern!r}; got {self.buf[self.pos:][-600:]!r}")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def line(self, text: str) -> None:
        self.send(text.encode() + b"\r")

    def wait(self, timeout: float = 30) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.1) and select.select([self.fd], [], [], 0)[0]:
                    pass
                os.close(self.fd)
                self.status = os.waitstatus_to_exitcode(status)
                if self.status < 0:
                    self.status = 128 - self.status
                return self.status
        raise Failed(f"{self.command!r} did not end within {timeout}s; output {self.buf[-600:]!r}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)

    def transcript(self, path: str, note: str) -> None:
        with open(path, "wb") as f:
            f.write(HEADER.encode())
            f.write(f"# command: {self.command}\n# exit: {self.status}\n# note: {note}\n".encode())
            f.write(self.buf)
        print(f"  wrote {path}")


def front(cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A non-interactive command on rik-front as rik (stdout and stderr apart)."""
    return subprocess.run([*SSH, "rik-front", cmd], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------ nodes
def _ns(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def node_processes(node: str) -> list[tuple[int, str, str]]:
    """(pid, user, cmdline) of every process in NODE's network namespace (ps on the node)."""
    want = _ns(f"/run/netns/{node}")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if _ns(f"/proc/{name}/ns/net") != want:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{name}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if cmd:
            import pwd
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            found.append((int(name), user, cmd))
    return found


def job_leftovers(flavor: str, n: int, markers: list[str]) -> list[str]:
    left = []
    for node in ("rik-c1", "rik-c2"):
        for pid, user, cmd in node_processes(node):
            if f"jobshell {flavor} {n}" in cmd or any(m in cmd for m in markers):
                left.append(f"{node} {pid} {user} {cmd}")
    return left


def expect_clean(flavor: str, n: int, markers: list[str], within: float = 10) -> None:
    deadline = time.time() + within
    while True:
        left = job_leftovers(flavor, n, markers)
        if not left:
            return
        if time.time() > deadline:
            raise Failed(f"processes of {flavor} job {n} left on the nodes: {left}")
        time.sleep(0.2)


def start_markers(s: Session, tag: str) -> list[str]:
    """Leave processes behind in the job: a plain background one and a daemonised one (setsid)."""
    a, b = f"sleep 4{tag}1", f"sleep 4{tag}2"
    s.line(f"{a} & setsid -f {b} >/dev/null 2>&1 </dev/null; echo MARK-$(( 6 * 7 ))")
    s.expect(rb"MARK-42")
    s.expect(PROMPT)
    deadline = time.time() + 5
    while True:  # both must really run on a node first, or "nothing left" would prove nothing
        seen = [m for m in (a, b) if any(m in cmd for node in ("rik-c1", "rik-c2")
                                          for _, _, cmd in node_processes(node))]
        if len(seen) == 2:
            return [a, b]
        if time.time() > deadline:
            raise Failed(f"marker processes not seen on the nodes: {seen}")
        time.sleep(0.1)


def spool_job(flavor: str, n: int) -> dict | None:
    try:
        return json.load(open(f"{SPOOL}/{flavor}/jobs/{n}.json"))
    except OSError:
        return None


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


# ------------------------------------------------------------------------------------------ tests
RECORD: str | None = None














def t_lsf_basic() -> None:
    cmd = f"{BSUB} -Is -n 2 /bin/bash"
    s = Session(cmd)
    n = int(s.expect(rb"Job <(\d+)> is submitted to default queue <normal>\.\r\n").group(1))
    s.expect(rb"<<Waiting for dispatch \.\.\.>>\r\n")
    node = s.expect(rb"<<Starting on (rik-c[12])>>\r\r\n").group(1).decode()
    s.expect(PROMPT)
    s.line("echo RIK-PROBE host=$(hostname) job=$LSB_JOBID n=$LSB_DJOB_NUMPROC name=$LSB_JOBNAME q=$LSB_QUEUE")
    m = s.expect(rb"RIK-PROBE host=(\S+) job=(\d+) n=(\d) name=(\S+) q=(\S+)")
    check(m.groups() == (node.encode(), str(n).encode(), b"2", b"/bin/bash", b"normal"), f"env {m.groups()}")
    s.expect(PROMPT)
    r = front(f"{BJOBS} {n}")
    check(r.returncode == 0 and r.stdout.startswith("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST")
          and re.search(rf"^{n}\s+rik\s+RUN\s+normal\s+rik-front\s+{node}\s+/bin/bash ", r.stdout, re.M)
          and f"\n{' ' * 45}{node}\n" in r.stdout, f"bjobs: {r}")
    r = front(f"{BJOBS} -noheader -o 'stat exec_host' {n}")
    check(r.stdout == f"RUN 2*{node}\n", f"bjobs -o: {r}")
    markers = start_markers(s, "41")
    s.line("exit 3")
    check(s.wait() == 3, f"bsub exit {s.status}")
    expect_clean("lsf", n, markers)
    r = front(f"{BJOBS} -noheader -o 'stat exit_code' {n}")
    check(r.stdout == "EXIT 3\n", f"bjobs after: {r}")
    if RECORD:
        s.transcript(f"{RECORD}/lsf-bsub-Is.txt", "ssh -tt rik-front as rik (through rik-gw) under a local pty "
                     "(200 columns); typed a probe, left two sleeps behind, then `exit 3`")
    print(f"  job {n} ran on {node}; exit 3 passed through; nothing left on the node")


def t_lsf_pending_killed() -> None:
    cmd = f"{BSUB} -Is -q full /bin/bash"
    s = Session(cmd)
    n = int(s.expect(rb"Job <(\d+)> is submitted to queue <full>\.\r\n").group(1))
    s.expect(rb"<<Waiting for dispatch \.\.\.>>\r\n")
    time.sleep(1)
    r = front(f"{BJOBS} -noheader -o 'stat exec_host' {n}")
    check(r.stdout == "PEND -\n", f"bjobs pending: {r}")
    r = front(f"{BKILL} {n}")
    check(r.returncode == 0 and r.stdout == f"Job <{n}> is being terminated\n", f"bkill: {r}")
    s.expect(rb"<<Terminated while pending>>\r\r\n", timeout=10)
    check(s.wait() == 246, f"bsub exit {s.status}")
    r = front(f"{BKILL} 99999")
    check(r.returncode == 255 and r.stderr == "Job <99999>: No matching job found\n", f"bkill unknown: {r}")
    r = front(f"{BJOBS} 99999")
    check(r.returncode == 255 and r.stderr == "Job <99999> is not found\n", f"bjobs unknown: {r}")
    if RECORD:
        s.transcript(f"{RECORD}/lsf-bsub-Is-pending-killed.txt", "queue `full` never dispatches; "
                     f"`bkill {n}` run ~1 s after the waiting line")
    print(f"  job {n}: pending, bkill'd, <<Terminated while pending>>, exit 246")


def t_lsf_bkill_running() -> None:
    s = Session(f"{BSUB} -Is -q slow -J rikjob /bin/bash")
    n = int(s.expect(rb"Job <(\d+)> is submitted to queue <slow>\.\r\n").group(1))
    s.expect(rb"<<Starting on (rik-c[12])>>\r\r\n", timeout=15)
    s.expect(PROMPT)
    markers = start_markers(s, "42")
    r = front(f"{BKILL} {n}")
    check(r.returncode == 0 and r.stdout == f"Job <{n}> is being terminated\n", f"bkill: {r}")
    status = s.wait(timeout=15)
    expect_clean("lsf", n, markers, within=2)
    r = front(f"{BJOBS} -noheader -o 'stat' {n}")
    check(r.stdout == "EXIT\n", f"bjobs after bkill: {r}")
    print(f"  job {n}: bkill'd while running (ssh -tt exit {status}); node clean")


def t_lsf_client_killed() -> None:
    s = Session(f"{BSUB} -Is /bin/bash")
    n = int(s.expect(rb"Job <(\d+)> is submitted").group(1))
    s.expect(PROMPT)
    markers = start_markers(s, "43")
    os.kill(spool_job("lsf", n)["client"]["pid"], signal.SIGTERM)
    s.wait()
    expect_clean("lsf", n, markers)
    s = Session(f"{BSUB} -Is /bin/bash")
    n = int(s.expect(rb"Job <(\d+)> is submitted").group(1))
    s.expect(PROMPT)
    markers = start_markers(s, "44")
    os.kill(spool_job("lsf", n)["client"]["pid"], signal.SIGKILL)
    s.wait()
    expect_clean("lsf", n, markers)
    r = front(f"{BJOBS} -noheader -o stat {n}")
    check(r.stdout == "EXIT\n", f"bjobs after SIGKILL of bsub: {r}")
    print("  bsub SIGTERMed, then another SIGKILLed: both nodes clean")


def front_as(user: str, cmd: str) -> subprocess.CompletedProcess:
    ssh = ["ssh", "-F", f"{STATE}/ssh_config.{user}", "-o", "LogLevel=ERROR", "-J", "rik-gw"]
    return subprocess.run([*ssh, "rik-front", cmd], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def t_host_requests() -> None:
    """bsub -m picks the node; another user may look but not kill."""
    c = Session(f"{BSUB} -Is -m rik-c2 -n 2 /bin/bash")
    nc = int(c.expect(rb"Job <(\d+)>").group(1))
    c.expect(PROMPT)
    c.line("echo RIK-NODE $(hostname) ${NCPUS:-$LSB_DJOB_NUMPROC}")
    got = c.expect(rb"RIK-NODE (\S+ \d)").group(1)
    check(got == b"rik-c2 2", f"node/cpus {got!r}, wanted rik-c2 2")
    r = front_as("rik2", f"{BKILL} {nc}")
    check(r.returncode == 255 and r.stderr == f"Job <{nc}>: User permission denied\n", f"rik2 bkill: {r}")
    c.line("exit")
    check(c.wait() == 0, "exit status")
    print(f"  lsf {nc} (-m rik-c2); rik2 refused")


TESTS = {
    "lsf-basic": t_lsf_basic,
    "lsf-pending-killed": t_lsf_pending_killed, "lsf-bkill-running": t_lsf_bkill_running,
    "lsf-client-killed": t_lsf_client_killed, "host-requests": t_host_requests,
}


def main() -> int:
    global RECORD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", metavar="DIR", help="write the parser transcripts into DIR")
    ap.add_argument("tests", nargs="*", choices=[[], *TESTS], default=[])
    a = ap.parse_args()
    RECORD = a.record
    failed = []
    for name in a.tests or list(TESTS):
        t0 = time.time()
        print(f"{name} ...", flush=True)
        try:
            TESTS[name]()
            print(f"{name}: ok ({time.time() - t0:.1f}s)", flush=True)
        except (Failed, subprocess.TimeoutExpired) as e:
            print(f"{name}: FAILED: {e}", flush=True)
            failed.append(name)
    print(f"selftest: {len(a.tests or TESTS) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
