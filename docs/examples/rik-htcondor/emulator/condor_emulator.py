#!/usr/bin/python3
"""TEST EMULATOR for rik's example HTCondor plugin -- NOT HTCondor.

rik's test cluster has no HTCondor pool. This script imitates the client side of an HTCondor interactive job so
that rik-htcondor can run a real kernel in tests: ``condor_submit -interactive`` prints what HTCondor prints and
opens a real login shell on a compute test host (rik-c1 / rik-c2) with ``ssh -tt``; ``condor_rm`` ends the job;
``condor_q`` lists jobs. There is no schedd: the submitting process is the scheduler of its own job, and the job
state lives in a spool directory shared by all test users. README.md next to this file says which strings are
HTCondor's and which are guesses.

    condor_emulator.py install [PREFIX]     as root: PREFIX/bin/{condor_submit,condor_rm,condor_q} and the spool
                                            (default PREFIX /opt/rik-emulators/htcondor)

Standard library only; run by /usr/bin/python3 on the submit host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import sys
import time
from typing import Any

SPOOL = os.environ.get("RIK_HTCONDOR_EMU_SPOOL", "/var/spool/rik-emulators/htcondor")
NODES = ("rik-c1", "rik-c2")
SCHEDD = "rik-front"
FIRST_ID = 100
SUBMIT_PAUSE = 0.5  # condor_submit sleeps 3 s before condor_ssh_to_job ("with luck, the schedd starts the job")
DISPATCH_DELAY = 1.0  # from submission to the job running (a negotiation cycle, shortened)
NOTE = "TEST EMULATOR of HTCondor's {0} (rik, docs/examples/rik-htcondor/emulator): not HTCondor.\n"


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ processes
def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(ref: dict | None) -> bool:
    """The process recorded as {pid, start} still runs (never a reused pid)."""
    if not ref or "pid" not in ref:
        return False
    return start_time(int(ref["pid"])) == ref.get("start")


# ------------------------------------------------------------------------------------------------ spool
@contextlib.contextmanager
def locked():
    fd = os.open(os.path.join(SPOOL, "lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def job_path(n: int) -> str:
    return os.path.join(SPOOL, "jobs", f"{n}.json")


def load(n: int) -> dict | None:
    try:
        with open(job_path(n)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(job: dict) -> None:
    tmp = os.path.join(SPOOL, "jobs", f".{job['id']}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(job, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, job_path(job["id"]))


def forget(n: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(job_path(n))


def bump(key: str, first: int) -> int:
    with locked(), open(os.path.join(SPOOL, "state.json"), "r+") as f:
        try:
            state = json.load(f)
        except ValueError:
            state = {}
        value = int(state.get(key, first))
        state[key] = value + 1
        f.seek(0)
        f.truncate()
        json.dump(state, f)
    return value


def jobs() -> list[dict]:
    """Every job in the queue; a job whose client died without cleaning up (kill -9) has left it."""
    found = []
    for name in sorted(os.listdir(os.path.join(SPOOL, "jobs"))):
        if name.endswith(".json") and name[:-5].isdigit():
            job = load(int(name[:-5]))
            if job is None:
                continue
            if not alive(job.get("client")):
                if job.get("uid") == os.getuid() or os.geteuid() == 0:
                    forget(job["id"])
                continue
            found.append(job)
    return found


def check_spool(prog: str) -> None:
    if not os.path.exists(os.path.join(SPOOL, "lock")):
        err(f"{prog}: rik emulator: no spool in {SPOOL} (run condor_emulator.py install as root)\n")
        sys.exit(1)


# ------------------------------------------------------------------------------------------------ condor_submit
def condor_submit(args: list[str]) -> int:
    if "-help" in args or "--help" in args:
        out(NOTE.format("condor_submit") + "usage: condor_submit -interactive [-batch-name NAME] [-append CMD]...\n")
        return 0
    interactive, batch_name, appended, rest = False, None, [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-interactive", "-i"):
            interactive = True
        elif a in ("-append", "-a", "-batch-name") and i + 1 < len(args):
            if a == "-batch-name":
                batch_name = args[i + 1]
            else:
                appended.append(args[i + 1])
            i += 1
        elif a in ("-verbose", "-terse", "-debug", "-disable"):
            pass
        else:
            rest.append(a)
        i += 1
    if not interactive or rest:
        err("ERROR: rik emulator: only `condor_submit -interactive [-batch-name N] [-append CMD]...` is emulated\n")
        return 1
    requests = {}
    for line in appended:
        key, eq, value = line.partition("=")
        if not eq:
            err(f"\nERROR: on Line 1 of submit file: {line}\n")  # a guess at the wording for a malformed command
            return 1
        requests[key.strip().lower()] = value.strip()
    wanted = re.search(r'Machine\s*==\s*"([^"]+)"', requests.get("requirements", ""))
    check_spool("condor_submit")
    me = pwd.getpwuid(os.getuid())
    n = bump("next_id", FIRST_ID)
    job: dict[str, Any] = {
        "id": n,
        "owner": me.pw_name,
        "uid": me.pw_uid,
        "state": "I",
        "batch_name": batch_name,
        "requests": requests,
        "machine": wanted.group(1) if wanted else None,
        "submitted": time.time(),
        "client": {"pid": os.getpid(), "start": start_time(os.getpid())},
        "iwd": os.getcwd(),
    }
    with locked():
        save(job)
    out(f"Submitting job(s).\n1 job(s) submitted to cluster {n}.\n")

    gone = {"signal": 0}

    def leave(signum: int, frame: object) -> None:  # -remove-on-interrupt: Ctrl-C removes the job
        gone["signal"] = signum

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)
    time.sleep(SUBMIT_PAUSE)
    err("Waiting for job to start...\n")
    # A job asking for a machine the pool does not have stays idle: a real pool would never match it.
    dispatch_at = job["submitted"] + DISPATCH_DELAY if job["machine"] in (None, *NODES) else None
    while True:
        if gone["signal"]:
            forget(n)
            return 1
        current = load(n)
        if current is None or current.get("state") == "X":
            forget(n)
            err(f"No such job: {n}.0\n")  # a guess: condor_ssh_to_job reports what the schedd says
            return 1
        if dispatch_at is not None and time.time() >= dispatch_at:
            break
        time.sleep(0.1)
    node = job["machine"] or NODES[bump("next_node", 0) % len(NODES)]
    with locked():
        current = load(n)
        if current is None or current.get("state") == "X":
            err(f"No such job: {n}.0\n")
            return 1
        current.update(state="R", node=node, started=time.time())
        save(current)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    slot = f"slot1_1@{node}"
    # The job's shell: what HTCondor's condor_ssh_to_job_shell_setup does (cd to the job's directory, welcome,
    # the login shell), here over ssh. condor_submit execs condor_ssh_to_job, which runs ssh: so does this.
    remote = (
        f"cd {shlex.quote(job['iwd'])} 2>/dev/null; "
        f"export _CONDOR_SLOT_NAME={shlex.quote(slot)} _CONDOR_JOB_IWD={shlex.quote(job['iwd'])} "
        f"_CONDOR_REQUEST_CPUS={shlex.quote(requests.get('request_cpus', '1'))}; "
        'echo "Welcome to $_CONDOR_SLOT_NAME!"; exec "$SHELL" -l'
    )
    tty = "-tt" if os.isatty(0) else "-T"
    ssh = ["ssh", tty, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
           "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", node, remote]  # fmt: skip
    os.execvp("ssh", ssh)
    return 127


# ------------------------------------------------------------------------------------------------ condor_rm
def condor_rm(args: list[str]) -> int:
    if not args or "-help" in args or "--help" in args:
        out(NOTE.format("condor_rm") + "usage: condor_rm CLUSTER[.PROC]...\n")
        return 0 if args else 1
    check_spool("condor_rm")
    rc = 0
    for text in args:
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?", text)
        n = int(m.group(1)) if m else -1
        with locked():
            job = load(n) if m else None
            mine = job is not None and (job.get("uid") == os.getuid() or os.geteuid() == 0)
            if m is None or job is None or not mine or job.get("state") == "X" or not alive(job.get("client")):
                err(f"Couldn't find/remove all jobs in cluster {text.split('.')[0]}\n")  # a guess at the wording
                rc = 1
                continue
            job["state"] = "X"
            save(job)
        # The job's client is the ssh to the node (after exec), or condor_submit waiting: end it, and with it the
        # session on the node (sshd hangs up the job's terminal).
        client: dict = job.get("client") or {}
        if alive(client):
            with contextlib.suppress(OSError):
                os.kill(int(client["pid"]), signal.SIGTERM)
            deadline = time.time() + 5
            while alive(client) and time.time() < deadline:
                time.sleep(0.05)
            if alive(client):
                with contextlib.suppress(OSError):
                    os.kill(int(client["pid"]), signal.SIGKILL)
        forget(n)
        out(
            f"Job {n}.{m.group(2)} marked for removal\n"
            if m.group(2)
            else f"All jobs in cluster {n} have been marked for removal\n"
        )
    return rc


# ------------------------------------------------------------------------------------------------ condor_q
def condor_q(args: list[str]) -> int:
    check_spool("condor_q")
    me = pwd.getpwuid(os.getuid()).pw_name
    mine = [j for j in jobs() if "-allusers" in args or j["owner"] == me]
    out(f"\n\n-- Schedd: {SCHEDD} : <10.200.2.2:9618?... @ {time.strftime('%m/%d/%y %H:%M:%S')}\n")
    out(" ID      OWNER            SUBMITTED     RUN_TIME ST PRI SIZE CMD\n")
    for j in mine:
        run = int(time.time() - j["started"]) if j.get("started") else 0
        when = time.strftime("%m/%d %H:%M", time.localtime(j["submitted"]))
        out(f" {j['id']}.0{'':<{6 - len(str(j['id']))}}{j['owner']:<16} {when}   0+{run // 3600:02d}:{run % 3600 // 60:02d}:{run % 60:02d} "
            f"{j['state']}  0    0.0  (interactive job)\n")  # fmt: skip
    idle = sum(1 for j in mine if j["state"] == "I")
    out(f"\n{len(mine)} jobs; 0 completed, 0 removed, {idle} idle, {len(mine) - idle} running, 0 held, 0 suspended\n")
    return 0


# ------------------------------------------------------------------------------------------------ install
WRAPPER = """#!/usr/bin/python3
# TEST EMULATOR of HTCondor's {prog} for rik's example plugin -- NOT HTCondor (see ../README.md).
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, {lib!r})
import condor_emulator
sys.exit(condor_emulator.main({prog!r}, sys.argv[1:]))
"""


def install(args: list[str]) -> int:
    """PREFIX/{bin,lib} and the spool; idempotent; jobs already in the spool are left alone."""
    prefix = args[0] if args else "/opt/rik-emulators/htcondor"
    here = os.path.dirname(os.path.realpath(__file__))
    lib, bin_dir = os.path.join(prefix, "lib"), os.path.join(prefix, "bin")
    for d in (prefix, lib, bin_dir, SPOOL):
        os.makedirs(d, mode=0o755, exist_ok=True)
    shutil.copyfile(os.path.realpath(__file__), os.path.join(lib, "condor_emulator.py"))
    os.chmod(os.path.join(lib, "condor_emulator.py"), 0o644)
    shutil.copyfile(os.path.join(here, "README.md"), os.path.join(prefix, "README.md"))
    for prog in ("condor_submit", "condor_rm", "condor_q"):
        path = os.path.join(bin_dir, prog)
        with open(path, "w") as f:
            f.write(WRAPPER.format(prog=prog, lib=lib))
        os.chmod(path, 0o755)
    jobs_dir = os.path.join(SPOOL, "jobs")
    os.makedirs(jobs_dir, exist_ok=True)
    os.chmod(jobs_dir, 0o1777)  # job files belong to the users who submit
    for name, content in (("lock", ""), ("state.json", json.dumps({"next_id": FIRST_ID, "next_node": 0}) + "\n")):
        path = os.path.join(SPOOL, name)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(content)
        os.chmod(path, 0o666)
    out(f"rik HTCondor test emulator: {bin_dir}/condor_submit, condor_rm, condor_q; spool {SPOOL}\n")
    return 0


COMMANDS = {"condor_submit": condor_submit, "condor_rm": condor_rm, "condor_q": condor_q, "install": install}


def main(prog: str, args: list[str]) -> int:
    try:
        return COMMANDS[prog](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(COMMANDS)}}} ARGS  (rik test emulator, not HTCondor)")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
