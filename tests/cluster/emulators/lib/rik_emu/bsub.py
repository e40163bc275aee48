"""LSF ``bsub -Is`` (OpenLava / IBM spellings)."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import time

from .base import (
    LSF_CLEAN_PERIOD,
    LSF_DEFAULT_QUEUE,
    LSF_FAILED,
    LSF_TERMINATED_PENDING,
    NODES,
    POLL,
    SERVER,
    Spool,
    client_gone,
    die_with_signal,
    end_processes,
    err,
    may_control,
    out,
    proc_ref,
    ref_alive,
    submit_env,
    write_all,
)
from .job import Client, _fixture_help

# bsub options that take a value (OpenLava and IBM LSF 10 spellings); anything else starting with "-"
# before the command is a flag.
BSUB_VALUE_OPTS = {
    "-a", "-alloc_flags", "-app", "-ar", "-b", "-C", "-c", "-clusters", "-cn_cu", "-cn_mem", "-core_isolation",
    "-csm", "-cwd", "-D", "-data", "-datagrp", "-E", "-e", "-eo", "-Ep", "-eptl", "-env", "-ext", "-F", "-f",
    "-freq", "-G", "-g", "-gpu", "-hostfile", "-i", "-is", "-J", "-Jd", "-jsdl", "-jsdl_strict", "-jsm", "-k",
    "-L", "-Lp", "-ln_mem", "-ln_slots", "-M", "-m", "-mig", "-n", "-nnodes", "-o", "-oo", "-outdir", "-P",
    "-p", "-pack", "-ptl", "-Q", "-q", "-R", "-rcacct", "-rn", "-S", "-s", "-sla", "-sp", "-stage", "-step_cgroup",
    "-T", "-t", "-U", "-u", "-v", "-W", "-We", "-w", "-wa", "-wt", "-XF", "-Zs",
}
BSUB_INTERACTIVE = {"-I", "-Ip", "-Is", "-IS", "-ISp", "-ISs", "-IX"}
BSUB_USAGE = "bsub -Is [-n N] [-q queue] [-J name] [-W [hh:]mm] [-M mem] [-R res] [-P project] [-m host] " \
             "[-gpu ...] command [args]"


def _lsf_hosts(spec: str) -> list[str]:
    hosts = []
    for word in spec.split():
        name = word.rstrip("!").split("+")[0]
        if name:
            hosts.append(name)
    return hosts


def _lsf_time(t: float | None) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(t)) if t else "-"


def bsub(args: list[str]) -> int:
    if "--help" in args[:1] or "-h" in args[:1]:
        _fixture_help("bsub", "IBM LSF / OpenLava bsub", BSUB_USAGE + "  (queues: full = never starts, "
                      "slow = starts after 3 s)")
        return 0
    if args[:1] == ["-V"]:
        err("rik emulator of LSF bsub (TEST FIXTURE), no version\n")
        return 0
    opts: dict[str, str] = {}
    interactive = False
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        a = args[i]
        if a == "--":
            i += 1
            break
        if a in BSUB_INTERACTIVE:
            interactive = True
        elif a in BSUB_VALUE_OPTS or (len(a) > 2 and a[:2] in BSUB_VALUE_OPTS and a[:2] not in ("-I",)):
            if a in BSUB_VALUE_OPTS:
                if i + 1 >= len(args):
                    err(f"bsub: option requires an argument -- '{a[1:]}'\n")
                    return LSF_FAILED
                opts[a] = args[i + 1]
                i += 1
            else:  # attached value: -n4, -qslow, -W10
                opts[a[:2]] = a[2:]
        i += 1
    command = args[i:]
    if not interactive:
        err("bsub: rik emulator: only interactive jobs (bsub -I, -Ip, -Is) are emulated. Job not submitted.\n")
        return LSF_FAILED
    if not command:
        err("bsub: rik emulator: a command is required (bsub -Is COMMAND). Job not submitted.\n")
        return LSF_FAILED
    queue_given = "-q" in opts
    queue = opts.get("-q") or os.environ.get("LSB_DEFAULTQUEUE") or LSF_DEFAULT_QUEUE
    nproc = 1
    if "-n" in opts:
        first = opts["-n"].split(",")[0]
        if not first.isdigit() or int(first) < 1:
            err("Bad argument. Job not submitted.\n")
            return LSF_FAILED
        nproc = int(first)
    host = None
    if "-m" in opts:
        wanted = [h for h in _lsf_hosts(opts["-m"]) if h in NODES]
        if not wanted:
            err("Bad host name, host group name or cluster name. Job not submitted.\n")
            return LSF_FAILED
        host = wanted[0]
    cmdline = " ".join(command)  # LSF joins the words with spaces (no re-quoting)
    name = opts.get("-J", cmdline)

    spool = Spool("lsf", "bsub")
    spool.check()
    pw = pwd.getpwuid(os.getuid())
    cwd = os.getcwd()
    n = spool.new_id()
    job = {"id": n, "flavor": "lsf", "name": name, "command": cmdline, "queue": queue,
           "owner": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "state": "PEND",
           "submit_time": time.time(), "ncpus": nproc, "host_request": host, "options": opts,
           "workdir": cwd, "client": proc_ref(os.getpid())}
    client = Client(spool, job)
    with spool.lock():
        spool.save(job)
    submitted = (f"Job <{n}> is submitted to queue <{queue}>.\n" if queue_given
                 else f"Job <{n}> is submitted to default queue <{queue}>.\n")
    (err if os.environ.get("BSUB_STDERR") else out)(submitted)
    err("<<Waiting for dispatch ...>>\n")

    # ---- pending
    at = client.dispatch_at(job)
    while True:
        job = spool.load(n)
        if job is None or job.get("killed") or job["state"] != "PEND":
            err("<<Terminated while pending>>\r\n")
            return LSF_TERMINATED_PENDING
        if at is not None and time.time() >= at:
            break
        sigs, _ = client.signals(POLL)
        if any(s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT) for s in sigs):
            # nios before the job started: PassSig() runs LSF_NIOS_DIE_CMD = "bkill <N>".
            _lsf_finish_pending(spool, n)
            out(f"Job <{n}> is being terminated\n")
            return 0
    job = client.claim(host or spool.next_node())
    if job is None:
        err("<<Terminated while pending>>\r\n")
        return LSF_TERMINATED_PENDING

    # ---- start: /bin/sh -c COMMAND on the node, in the submission directory and environment
    node = job["node"]
    env = submit_env(("LSB_", "LS_JOBPID", "LSF_", "OPENLAVA_"))
    env.update({
        "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell,
        "PWD": cwd, "LSB_JOBID": str(n), "LSB_JOBNAME": name, "LSB_QUEUE": queue,
        "LSB_HOSTS": " ".join([node] * nproc), "LSB_MCPU_HOSTS": f"{node} {nproc}",
        "LSB_DJOB_NUMPROC": str(nproc), "LSB_MAX_NUM_PROCESSORS": str(nproc), "LSB_JOBINDEX": "0",
        "LSB_INTERACTIVE": "Y", "LSB_SUB_HOST": SERVER, "LS_SUBCWD": cwd, "LSB_EXEC_CLUSTER": "rik",
        "LSB_JOBEXIT_STAT": "0", "LSFUSER": pw.pw_name, "TERM": os.environ.get("TERM", "dumb"),
    })
    if "-P" in opts:
        env["LSB_PROJECT_NAME"] = opts["-P"]
    if "PATH" not in env:
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if not client.start(job, "/bin/sh", ["/bin/sh", "-c", cmdline], env, cwd):
        job = spool.load(n)
        if job is None or job.get("killed"):
            err("<<Terminated while pending>>\r\n")
            return LSF_TERMINATED_PENDING
        err(f"bsub: rik emulator: could not start the job on {node}\n")
        job["client"] = None
        end_processes(job)
        spool.update(n, lambda j: j.update(state="EXIT", end_time=time.time(), client=None))
        return LSF_FAILED
    err(f"<<Starting on {node}>>\r\n")

    # ---- running: nios passes SIGINT on to the job (here: a Ctrl-C on the job's terminal)
    client.relay(on_sigint=lambda fd: write_all(fd, b"\x03"))
    job = spool.load(n) or {}
    job["client"] = None
    if ref_alive(job.get("shell")):
        end_processes(job)
        job = spool.load(n) or job
    status = job.get("cmd_status") or {"exit": client.ssh.returncode if client.ssh else 1}
    code = status.get("exit", 0)

    def finish(j):
        j["state"] = "DONE" if status.get("exit") == 0 and not j.get("killed") else "EXIT"
        j["end_time"] = time.time()
        j["client"] = None
        j["exit_code"] = code if "exit" in status else 128 + status["signal"]
    spool.update(n, finish)
    if "signal" in status:
        # nios kill_self(): bsub ends by the signal that ended the job (not a documented message).
        die_with_signal(status["signal"])
    return code


def _lsf_finish_pending(spool: Spool, n: int) -> None:
    def kill(j):
        j["state"], j["killed"], j["end_time"] = "EXIT", True, time.time()
        j["exit_code"] = 130
    spool.update(n, kill)


def _lsf_reap(spool: Spool, job: dict) -> dict:
    """Bring JOB's state up to date: a client that died without cleaning up ended its job."""
    if job["state"] in ("PEND", "RUN") and client_gone(job):
        if not may_control(job):  # someone else's: show it as over, leave the cleaning to its owner
            return {**job, "state": "EXIT", "end_time": job.get("end_time") or time.time()}
        end_processes(job)
        def gone(j):
            j["state"], j["end_time"], j["client"] = "EXIT", time.time(), None
        job = spool.update(job["id"], gone) or job
    return job


def _lsf_jobs(spool: Spool) -> list[dict]:
    jobs = []
    for job in spool.all():
        if job["state"] in ("DONE", "EXIT") and time.time() - job.get("end_time", 0) > LSF_CLEAN_PERIOD:
            with contextlib.suppress(OSError):
                spool.remove(job["id"])
            continue
        try:
            jobs.append(_lsf_reap(spool, job))
        except OSError:
            jobs.append(job)
    return jobs
