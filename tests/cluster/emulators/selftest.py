#!/usr/bin/python3
"""Self-test of rik's PBS/LSF emulators (TEST FIXTURES) on the running test cluster; run as root
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
QSUB, QDEL, QSTAT = (f"{EMU}/pbs/bin/{p}" for p in ("qsub", "qdel", "qstat"))
BSUB, BKILL, BJOBS = (f"{EMU}/lsf/bin/{p}" for p in ("bsub", "bkill", "bjobs"))
SPOOL = "/var/spool/rik-emulators"
HEADER = "# emulated: strings from REFERENCE.md §2 (PBS/LSF servers cannot run here)\n"
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


def t_pbs_basic() -> None:
    cmd = f"{QSUB} -I -N rik -l ncpus=2"
    s = Session(cmd)
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    s.expect(rf"qsub: job {n}\.rik-front ready\r\n\r\n".encode())
    s.expect(PROMPT)
    s.line("echo RIK-PROBE host=$(hostname) job=$PBS_JOBID name=$PBS_JOBNAME ncpus=$NCPUS ppn=$PBS_NUM_PPN "
           "nodefile=$(wc -l < $PBS_NODEFILE) pwd=$PWD")
    m = s.expect(rb"RIK-PROBE host=(rik-c[12]) job=(\S+) name=(\S+) ncpus=(\d) ppn=(\d) nodefile=(\d) pwd=(\S+)")
    check(m.group(2) == f"{n}.rik-front".encode(), f"PBS_JOBID {m.group(2)!r}")
    check(m.groups()[2:] == (b"rik", b"2", b"2", b"2", b"/home/rik"), f"job env {m.groups()!r}")
    s.expect(PROMPT)
    r = front(f"{QSTAT} -f {n}")
    check(r.returncode == 0 and f"Job Id: {n}.rik-front\n" in r.stdout and "    job_state = R\n" in r.stdout
          and f"    exec_host = {m.group(1).decode()}/0-1\n" in r.stdout, f"qstat -f: {r}")
    r = front(QSTAT)
    check(re.search(rf"^{n}\.rik-front\s+rik\s+rik\s+00:00:00 R batch", r.stdout, re.M) is not None,
          f"qstat table: {r.stdout!r}")
    markers = start_markers(s, "31")
    s.line("exit")
    s.expect(rf"\r\nqsub: job {n}\.rik-front completed\r\n".encode())
    check(s.wait() == 0, f"qsub exit {s.status}")
    expect_clean("pbs", n, markers)
    r = front(f"{QSTAT} {n}")
    check(r.returncode == 153 and r.stderr == f"qstat: Unknown Job Id {n}.rik-front\n", f"qstat after: {r}")
    if RECORD:
        s.transcript(f"{RECORD}/pbs-qsub-I.txt", "ssh -tt rik-front as rik (through rik-gw) under a local "
                     "pty (200 columns); typed a probe, left two sleeps behind, then exit")
    print(f"  job {n} ran on {m.group(1).decode()}; nothing left on the node")


def t_pbs_queued_deleted() -> None:
    cmd = f"{QSUB} -I -q full -N rikq"
    s = Session(cmd)
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    time.sleep(1)
    r = front(f"{QSTAT} -f {n}.rik-front")
    check("    job_state = Q\n" in r.stdout and "    queue = full\n" in r.stdout, f"qstat -f queued: {r}")
    r = front(f"{QDEL} {n}")
    check(r.returncode == 0 and r.stdout == "" and r.stderr == "", f"qdel: {r}")
    s.expect(rf"qsub: job {n}\.rik-front apparently deleted\r\n".encode(), timeout=10)
    check(s.wait() == 1, f"qsub exit {s.status}")
    r = front(f"{QDEL} {n}")
    check(r.returncode == 153 and r.stderr == f"qdel: Unknown Job Id {n}.rik-front\n", f"qdel again: {r}")
    if RECORD:
        s.transcript(f"{RECORD}/pbs-qsub-I-queued-deleted.txt", "queue `full` never starts a job; "
                     f"`qdel {n}` run ~1 s after the waiting line")
    print(f"  job {n}: queued, qdel'd, 'apparently deleted', exit 1")


def t_pbs_qdel_running() -> None:
    s = Session(f"{QSUB} -I -q slow")
    t0 = time.time()
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    s.expect(rf"qsub: job {n}\.rik-front ready\r\n\r\n".encode(), timeout=15)
    check(time.time() - t0 >= 2.5, "queue slow started before 3 s")
    s.expect(PROMPT)
    markers = start_markers(s, "32")
    r = front(f"{QDEL} {n}.rik-front")
    check(r.returncode == 0 and r.stdout == "" and r.stderr == "", f"qdel: {r}")
    s.expect(rf"\r\nqsub: job {n}\.rik-front completed\r\n".encode(), timeout=10)
    check(s.wait() == 0, f"qsub exit {s.status}")
    expect_clean("pbs", n, markers, within=2)
    print(f"  job {n}: slow queue waited {time.time() - t0:.1f}s in all; qdel'd while running; node clean")


def t_pbs_ctrl_c() -> None:
    s = Session(f"{QSUB} -I -q full")
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    time.sleep(0.5)
    s.send(b"\x03")
    s.expect(rb"Do you wish to terminate the job and exit \(y\|\[n\]\)\? ")
    s.line("n")
    time.sleep(0.5)
    check(spool_job("pbs", n) is not None, "job gone after answering n")
    s.send(b"\x03")
    s.expect(rb"Do you wish to terminate the job and exit \(y\|\[n\]\)\? ")
    s.line("y")
    s.expect(rf"Job {n}\.rik-front is being deleted\r\n".encode())
    check(s.wait() == 0, f"qsub exit {s.status}")
    check(spool_job("pbs", n) is None, "job still in the spool")
    print(f"  job {n}: Ctrl-C prompt, n keeps waiting, y deletes")


def t_pbs_hangup() -> None:
    s = Session(f"{QSUB} -I")
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    s.expect(PROMPT)
    markers = start_markers(s, "33")
    s.kill(signal.SIGKILL)  # the local ssh dies: sshd on rik-front hangs up qsub's terminal
    s.wait()
    expect_clean("pbs", n, markers)
    deadline = time.time() + 5
    while spool_job("pbs", n) is not None and time.time() < deadline:
        time.sleep(0.1)
    check(spool_job("pbs", n) is None, "job still in the spool after hangup")
    print(f"  job {n}: terminal hung up -> qsub ended, node clean")


def t_pbs_client_killed() -> None:
    s = Session(f"{QSUB} -I")
    n = int(s.expect(rb"qsub: waiting for job (\d+)\.rik-front to start\r\n").group(1))
    s.expect(PROMPT)
    markers = start_markers(s, "34")
    client = spool_job("pbs", n)["client"]["pid"]
    os.kill(client, signal.SIGKILL)
    s.wait()
    expect_clean("pbs", n, markers)
    r = front(f"{QSTAT} {n}")
    check(r.returncode == 153, f"qstat of a job whose qsub was SIGKILLed: {r}")
    print(f"  job {n}: qsub SIGKILLed -> node clean, job forgotten")


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
    """-l host= / -l nodes=NAME:ppn= / bsub -m pick the node; two jobs at once get their own ids; another
    user may look but not delete."""
    a = Session(f"{QSUB} -I -l host=rik-c2")
    b = Session(f"{QSUB} -I -l nodes=rik-c1:ppn=3,walltime=01:00:00")
    c = Session(f"{BSUB} -Is -m rik-c2 -n 2 /bin/bash")
    na = int(a.expect(rb"waiting for job (\d+)\.").group(1))
    nb = int(b.expect(rb"waiting for job (\d+)\.").group(1))
    nc = int(c.expect(rb"Job <(\d+)>").group(1))
    check(na != nb, "two qsubs got the same job id")
    for s, want in ((a, b"rik-c2 1"), (b, b"rik-c1 3"), (c, b"rik-c2 2")):
        s.expect(PROMPT)
        s.line("echo RIK-NODE $(hostname) ${NCPUS:-$LSB_DJOB_NUMPROC}")
        got = s.expect(rb"RIK-NODE (\S+ \d)").group(1)
        check(got == want, f"node/cpus {got!r}, wanted {want!r}")
    r = front(f"{QSTAT} -f {nb}")
    check("    Resource_List.walltime = 01:00:00\n" in r.stdout and "    exec_host = rik-c1/0-2\n" in r.stdout,
          f"qstat -f: {r.stdout!r}")
    r = front_as("rik2", f"{QDEL} {na}")
    check(r.returncode == 159 and r.stderr == f"qdel: Unauthorized Request  {na}.rik-front\n", f"rik2 qdel: {r}")
    r = front_as("rik2", f"{BKILL} {nc}")
    check(r.returncode == 255 and r.stderr == f"Job <{nc}>: User permission denied\n", f"rik2 bkill: {r}")
    r = front_as("rik2", f"{QSTAT} {na}")
    check(r.returncode == 0 and f"{na}.rik-front" in r.stdout, f"rik2 qstat: {r}")
    for s in (a, b, c):
        s.line("exit")
    check([a.wait(), b.wait(), c.wait()] == [0, 0, 0], "exit statuses")
    r = front(f"{QDEL} -m bye 99999")
    check(r.returncode == 153, f"qdel unknown: {r}")
    print(f"  jobs {na} (host=rik-c2), {nb} (nodes=rik-c1:ppn=3), lsf {nc} (-m rik-c2); rik2 refused")


TESTS = {
    "pbs-basic": t_pbs_basic, "pbs-queued-deleted": t_pbs_queued_deleted,
    "pbs-qdel-running": t_pbs_qdel_running, "pbs-ctrl-c": t_pbs_ctrl_c, "pbs-hangup": t_pbs_hangup,
    "pbs-client-killed": t_pbs_client_killed, "lsf-basic": t_lsf_basic,
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
