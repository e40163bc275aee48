"""LSF ``bkill`` and ``bjobs``."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sys
import time

from .base import LSF_FAILED, SERVER, Spool, err, kill_tree, may_control, out, ref_alive, signal_ref
from .bsub import _lsf_jobs, _lsf_reap, _lsf_time
from .job import _fixture_help, _getopt


def bkill(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        _fixture_help("bkill", "IBM LSF / OpenLava bkill", "bkill [-s signal] JOBID...")
        return 0
    if "-V" in args:
        err("rik emulator of LSF bkill (TEST FIXTURE), no version\n")
        return 0

    def usage():
        err("Usage: bkill [-h] [-V] [-l] [-m host_name] [-q queue_name]\n"
            "               [-u user_name | -u all] [0] [-r | -s sigval] [-J job_name] \n"
            "               [jobId | \"jobId[index_list]\"]...\n")
        sys.exit(LSF_FAILED)
    opts, ids = _getopt("bkill", args, "VhkSlq:u:m:p:rfs:J:n:ad", usage)
    sig = None
    for o, v in opts:
        if o == "-s":
            name = v.upper().removeprefix("SIG")
            sig = int(v) if v.isdigit() else getattr(signal, "SIG" + name, None)
            if sig is None:
                err(f"{v}: Illegal signal value\n")
                return LSF_FAILED
        elif o == "-l":
            out("HUP INT QUIT ILL TRAP ABRT EMT FPE KILL BUS SEGV SYS PIPE ALRM TERM URG STOP TSTP CONT "
                "CHLD TTIN TTOU IO XCPU XFSZ VTALRM PROF WINCH LOST USR1 USR2\n")
            return LSF_FAILED
    if not ids:
        err("Job ID or one of '-m', '-u' '-q' and '-J' must be specified.\n")
        usage()
    spool = Spool("lsf", "bkill")
    spool.check()
    failed = signaled = False
    for text in ids:
        n = int(text) if text.isdigit() else None
        job = spool.load(n) if n is not None else None
        if n is None:
            err(f"{text}: Illegal job ID.\n")
            failed = True
            continue
        if job is not None:
            job = _lsf_reap(spool, job)
        if job is None:
            err(f"Job <{n}>: No matching job found\n")
            failed = True
        elif not may_control(job):
            err(f"Job <{n}>: User permission denied\n")
            failed = True
        elif job["state"] in ("DONE", "EXIT"):
            err(f"Job <{n}>: Job has already finished\n")
            failed = True
        elif sig is not None and sig != signal.SIGKILL:
            if job["state"] == "PEND":
                err(f"Job <{n}>: Job has not started yet\n")
                failed = True
                continue
            cmd = job.get("cmd")
            if ref_alive(cmd):
                with contextlib.suppress(OSError):
                    os.killpg(int(cmd["pid"]), sig)
            out(f"Job <{n}> is being signaled\n")
            signaled = True
        else:
            _lsf_kill(spool, job)
            out(f"Job <{n}> is being terminated\n")
            signaled = True
    return 0 if signaled and not failed else LSF_FAILED


def _lsf_kill(spool: Spool, job: dict) -> None:
    n = job["id"]
    if job["state"] == "PEND":
        with spool.lock():
            cur = spool.load(n)
            if cur is not None and cur["state"] == "PEND":
                cur["state"], cur["killed"], cur["end_time"] = "EXIT", True, time.time()
                cur["exit_code"] = 130
                spool.save(cur)
                return
        job = spool.load(n) or job
    job = spool.update(n, lambda j: j.__setitem__("killed", True)) or job
    # sbatchd signals the job: its supervisor on the node runs SIGINT, SIGTERM, SIGKILL on it.
    signal_ref(job.get("shell"), signal.SIGTERM)
    if not job.get("shell"):
        signal_ref(job.get("ssh"), signal.SIGTERM)
    deadline = time.time() + 8
    while time.time() < deadline and ref_alive(job.get("shell")):
        time.sleep(0.05)
    kill_tree(job.get("shell"))
    deadline = time.time() + 5
    while time.time() < deadline and ref_alive(job.get("client")):
        cur = spool.load(n)
        if cur is None or cur["state"] in ("DONE", "EXIT"):
            break
        time.sleep(0.05)
    cur = spool.load(n)
    if cur is not None and cur["state"] not in ("DONE", "EXIT") and not ref_alive(cur.get("client")):
        spool.update(n, lambda j: j.update(state="EXIT", end_time=time.time(), client=None))


BJOBS_FIELDS = {"jobid": "JOBID", "id": "JOBID", "stat": "STAT", "user": "USER", "queue": "QUEUE",
                "from_host": "FROM_HOST", "exec_host": "EXEC_HOST", "job_name": "JOB_NAME",
                "name": "JOB_NAME", "submit_time": "SUBMIT_TIME", "start_time": "START_TIME",
                "finish_time": "FINISH_TIME", "nexec_host": "NEXEC_HOST", "slots": "SLOTS",
                "exit_code": "EXIT_CODE", "command": "COMMAND", "cmd": "COMMAND", "proj": "PROJ_NAME",
                "project": "PROJ_NAME", "nreq_slot": "NREQ_SLOT", "pids": "PIDS"}


def _bjobs_value(job: dict, field: str) -> str:
    running = job["state"] != "PEND"
    node = job.get("node")
    return {
        "JOBID": str(job["id"]), "STAT": job["state"], "USER": job["owner"], "QUEUE": job["queue"],
        "FROM_HOST": SERVER,
        "EXEC_HOST": (node if job["ncpus"] == 1 else f"{job['ncpus']}*{node}") if running and node else "-",
        "JOB_NAME": job["name"], "SUBMIT_TIME": _lsf_time(job["submit_time"]),
        "START_TIME": _lsf_time(job.get("start_time")), "FINISH_TIME": _lsf_time(job.get("end_time")),
        "NEXEC_HOST": "1" if running and node else "-", "SLOTS": str(job["ncpus"]),
        "NREQ_SLOT": str(job["ncpus"]), "EXIT_CODE": str(job.get("exit_code", "-")) if job["state"] == "EXIT"
        else "-", "COMMAND": job["command"], "PROJ_NAME": job["options"].get("-P", "default"),
        "PIDS": str(job["cmd"]["pid"]) if job.get("cmd") and job["state"] == "RUN" else "-",
    }[field]


def _trunc(text: str, width: int) -> str:
    # bjobs' TRUNC_STR: too long -> "*" and the last width-1 characters
    return text if len(text) <= width else "*" + text[len(text) - width + 1:]


def bjobs(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        _fixture_help("bjobs", "IBM LSF / OpenLava bjobs", "bjobs [-a] [-w] [-noheader] [-o fmt] [JOBID...]")
        return 0
    if "-V" in args:
        err("rik emulator of LSF bjobs (TEST FIXTURE), no version\n")
        return 0
    noheader = wide = False
    fmt = None
    rest = []
    i = 0
    while i < len(args):  # -noheader and -o are IBM's long single-dash options: take them out first
        if args[i] == "-noheader":
            noheader = True
        elif args[i] == "-o" and i + 1 < len(args):
            fmt = args[i + 1]
            i += 1
        elif args[i] == "-json":
            pass
        else:
            rest.append(args[i])
        i += 1

    def usage():
        err("Usage: bjobs [-h] [-V] [-w |-l] [-a] [-d] [-p] [-s] [-r] [-g jobgroup_name]\n"
            "             [-A] [-m host_name] [-q queue_name] [-u user_name | -u all]"
            "                     [-P project_name] [-N host_spec] [-J name_spec] [-UF]\n"
            "             [jobId | \"jobId[idxList]\" ...]\n")
        sys.exit(LSF_FAILED)
    opts, ids = _getopt("bjobs", rest, "VladpsrwWRAhJ:q:u:m:N:P:SU:g:", usage)
    flags = {o for o, _ in opts}
    wide = bool(flags & {"-w", "-W"})
    user = next((v for o, v in opts if o == "-u"), None)
    queue = next((v for o, v in opts if o == "-q"), None)
    spool = Spool("lsf", "bjobs")
    spool.check()
    jobs = _lsf_jobs(spool)
    rc = 0
    if ids:
        picked = []
        for text in ids:
            found = [j for j in jobs if text.isdigit() and j["id"] == int(text)]
            if not found:
                err(f"Job <{text}> is not found\n")
                rc = LSF_FAILED
            picked += found
        jobs = picked
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        if user != "all":
            jobs = [j for j in jobs if j["owner"] == (user or me)]
        if queue:
            jobs = [j for j in jobs if j["queue"] == queue]
        want = set()
        if "-a" in flags:
            want |= {"PEND", "RUN", "DONE", "EXIT"}
        if "-d" in flags:
            want |= {"DONE", "EXIT"}
        if "-p" in flags:
            want |= {"PEND"}
        if "-r" in flags:
            want |= {"RUN"}
        jobs = [j for j in jobs if j["state"] in (want or {"PEND", "RUN"})]
        if not jobs:
            what = ("No job found" if "-a" in flags else "No DONE/EXIT job found" if "-d" in flags
                    else "No pending job found" if "-p" in flags else "No running job found"
                    if "-r" in flags else "No unfinished job found")
            err(f"{what}{f' in queue <{queue}>' if queue else ''}\n")
            return LSF_FAILED
    if not jobs:
        return LSF_FAILED
    if fmt is not None:
        cols = []
        delim = " "
        for word in fmt.split():
            if word.startswith("delimiter="):
                delim = word.split("=", 1)[1].strip("'\"")[:1] or " "
                continue
            fname, _, width = word.partition(":")
            key = BJOBS_FIELDS.get(fname.lower())
            if key is None:
                err(f"Unknown field name <{fname}>\n")  # guess
                return LSF_FAILED
            w = width.lstrip("-")
            cols.append((key, int(w) if w.isdigit() else None, width.startswith("-")))

        def cell(text, w, right):
            if w is None:
                return text
            text = _trunc(text, w) if w and len(text) > w else text
            return text.rjust(w) if right else text.ljust(w)
        if not noheader:
            out(delim.join(cell(k, w, r) for k, w, r in cols).rstrip() + "\n")
        for job in jobs:
            out(delim.join(cell(_bjobs_value(job, k), w, r) for k, w, r in cols).rstrip() + "\n")
        return rc
    if not noheader:
        out("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME\n")
    for job in jobs:
        node = job.get("node") if job["state"] != "PEND" else None
        exec_host = node or ""
        if job["state"] != "PEND" and not node:
            exec_host = "   -   "
        name = job["name"]
        if wide:
            shown = exec_host if not node or job["ncpus"] == 1 else f"{job['ncpus']}*{node}"
            out(f"{job['id']:<7} {job['owner']:<7} {job['state']:<5} {job['queue']:<10} {SERVER:<11} "
                f"{shown:<11} {name:<10} {_lsf_time(job['submit_time'])}\n")
            continue
        out(f"{job['id']:<7} {job['owner']:<7.7} {job['state']:<5.5} {job['queue']:<10.10} {SERVER:<11.11} "
            f"{exec_host:<11.11} {_trunc(name, 10):<10.10} {_lsf_time(job['submit_time'])}\n")
        for _ in range(1, job["ncpus"] if node else 1):
            out(f"{'':45}{node}\n")
    return rc
