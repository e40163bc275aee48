"""A scripted fake job shell: run a scheduler plugin end to end with no cluster at hand.

:class:`FakeScheduler` writes two small programs into a directory of the test's: one stands in for the scheduler's
launch program (``condor_submit``, ``srun``…), the other for its cancel program (``condor_rm``, ``scancel``…).

The launch program plays a script of :class:`Print`, :class:`Wait`, :class:`Shell` and :class:`Exit` steps: it
prints what the real program prints while the job waits and starts (a recorded transcript, or lines written for
the test), then gives the job's shell, on this machine: ``/bin/sh -s`` reading its standard input for a scheduler
that runs a command (``srun … /bin/sh -s``), or an interactive shell showing a prompt for one that gives a terminal
(``qsub -I``). The cancel program ends that job the way a scheduler does, killing everything the job started.
Both record what they were asked, so a test can check the argv the plugin built and the job it cancelled.

A kernel made with ``fake.kernel_args()`` runs the plugin's real launch command (with the fake program as
``--launch-cmd``) and ``--transport direct``: the job runs on this machine, so nothing is tunnelled and no ssh
server is needed. Everything else is rik's real path: the plugin's hooks, the parser on the fake's output, the
bootstrap in the job's shell, a real kernel, the cancel command on shutdown.

Both programs are two-line ``/bin/sh`` wrappers named after the real ones, running :func:`main` of this module
in this Python with ``DIR job ARGV…`` or ``DIR cancel ARGV…``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Exit", "FakeJob", "FakeScheduler", "Print", "Shell", "Wait"]

#: Replaced in :class:`Print` texts and in :class:`Shell` prompts and environment values.
PLACEHOLDERS = ("{job_id}", "{hostname}", "{user}")


@dataclass(frozen=True)
class Print:
    """Print ``text`` (placeholders ``{job_id}``, ``{hostname}``, ``{user}`` replaced) on standard output, or on
    standard error with ``stderr=True``."""

    text: str
    stderr: bool = False


@dataclass(frozen=True)
class Wait:
    """Wait ``seconds`` (a job in the queue); ``None``: wait until the job is cancelled (a job that never starts)."""

    seconds: float | None = None


@dataclass(frozen=True)
class Shell:
    """The job starts: its shell runs on this machine until it exits or the job is cancelled.

    :param prompt: ``None``: ``/bin/sh -s`` reads the job's standard input (the scheduler runs the command the
        plugin appended, ``LaunchRequest.command``). A string: an interactive ``/bin/sh -i`` showing this prompt
        (a scheduler that gives a terminal; the plugin's ``tty=True``).
    :param env: variables the job's shell gets (``{"SLURM_JOB_ID": "{job_id}"}``), placeholders replaced.
    """

    prompt: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exit:
    """The launch program exits with ``status`` (a refused job, after :class:`Print` of the refusal)."""

    status: int = 1


Step = Print | Wait | Shell | Exit


@dataclass(frozen=True)
class FakeJob:
    """One run of the fake launch program, as recorded."""

    job_id: str
    argv: tuple[str, ...]
    pid: int
    state: str  # queued | running | exited | cancelled
    status: int | None = None

    @property
    def alive(self) -> bool:
        return _alive(self.pid)


class FakeScheduler:
    """A fake launch program (and cancel program) in ``directory``/bin, playing ``steps`` each time it runs.

    :param directory: a directory of the test's (it is created).
    :param program: the name of the scheduler's launch program (``condor_submit``).
    :param steps: what each run does, in order.
    :param cancel: the name of the cancel program (``condor_rm``); it is written next to the launch program, where
        :func:`rik.helpers.cancel_command` finds it when ``--launch-cmd`` is a path.
    :param on_cancel: what the launch program prints when its job is cancelled.
    :param first_job_id: job ids are counted from here.
    :param kill_wait: seconds between SIGTERM and SIGKILL for the job's processes when it is cancelled.
    """

    def __init__(
        self,
        directory: str | Path,
        program: str,
        steps: Sequence[Step],
        *,
        cancel: str | None = None,
        on_cancel: str = "",
        first_job_id: int = 1001,
        kill_wait: float = 2.0,
    ) -> None:
        if not steps:
            raise ValueError("a fake scheduler needs at least one step")
        for name in (program, cancel):
            if name is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
                raise ValueError(f"not a program name: {name!r}")
        self.dir = Path(directory).resolve()
        self.program = program
        self.cancel_program = cancel
        (self.dir / "bin").mkdir(parents=True, exist_ok=True)
        (self.dir / "jobs").mkdir(exist_ok=True)
        script = {
            "program": program,
            "steps": [_step_json(s) for s in steps],
            "on_cancel": on_cancel,
            "first_job_id": first_job_id,
            "kill_wait": kill_wait,
        }
        (self.dir / "script.json").write_text(json.dumps(script, indent=1))
        self._wrapper(program, "job")
        if cancel:
            self._wrapper(cancel, "cancel")

    def _wrapper(self, name: str, mode: str) -> None:
        path = self.dir / "bin" / name
        code = "import sys; from rik.testing.fakejob import main; sys.exit(main(sys.argv[1:]))"
        words = shlex.join([sys.executable, "-c", code, str(self.dir), mode])
        path.write_text(f'#!/bin/sh\nexec {words} "$@"\n')
        path.chmod(0o755)

    # -- what a test uses --------------------------------------------------------------------------------------
    @property
    def launch_cmd(self) -> str:
        """The fake launch program's path: the kernel's ``--launch-cmd``."""
        return str(self.dir / "bin" / self.program)

    def kernel_args(self) -> list[str]:
        """``rik manage --add`` options that send a kernel's job to this fake scheduler."""
        return ["--launch-cmd", self.launch_cmd, "--transport", "direct"]

    def launches(self) -> list[list[str]]:
        """The argv (without the program) of every run of the launch program, in order."""
        return [list(job.argv) for job in self.jobs().values()]

    def cancels(self) -> list[list[str]]:
        """The argv (without the program) of every run of the cancel program, in order."""
        return [record["argv"] for record in _records(self.dir / "cancels.jsonl")]

    def jobs(self) -> dict[str, FakeJob]:
        """Every job so far, by job id, in order."""
        jobs: dict[str, FakeJob] = {}
        for record in _records(self.dir / "launches.jsonl"):
            job_id = record["job_id"]
            with contextlib.suppress(OSError, ValueError):
                record.update(json.loads((self.dir / "jobs" / f"{job_id}.json").read_text()))
            jobs[job_id] = FakeJob(
                job_id=job_id,
                argv=tuple(record["argv"]),
                pid=record["pid"],
                state=record.get("state", "queued"),
                status=record.get("status"),
            )
        return jobs

    def running(self) -> list[str]:
        """The ids of jobs whose launch program is still running (queued or started)."""
        return [job_id for job_id, job in self.jobs().items() if job.alive]

    def wait_until_ended(self, timeout: float = 15.0) -> bool:
        """Wait until no job is running; whether that happened in time."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


# -------------------------------------------------------------------------------------------------------------
# The programs
# -------------------------------------------------------------------------------------------------------------


def _step_json(step: Step) -> dict[str, object]:
    if isinstance(step, Print):
        return {"print": step.text, "stderr": step.stderr}
    if isinstance(step, Wait):
        return {"wait": step.seconds}
    if isinstance(step, Shell):
        return {"shell": True, "prompt": step.prompt, "env": dict(step.env)}
    if isinstance(step, Exit):
        return {"exit": step.status}
    raise TypeError(f"not a fake scheduler step: {step!r}")


def _records(path: Path) -> Iterator[dict]:
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (``ps`` works on Linux and macOS alike)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True).stdout
    except OSError:
        return []
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].isdigit() and words[1].isdigit():
            children.setdefault(int(words[1]), []).append(int(words[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class _Job:
    def __init__(self, directory: Path, argv: list[str]) -> None:
        self.dir = directory
        self.script = json.loads((directory / "script.json").read_text())
        self.argv = argv
        self.stop_signal: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        with _locked(directory):
            count = sum(1 for _ in _records(directory / "launches.jsonl"))
            self.job_id = str(self.script["first_job_id"] + count)
            _append(directory / "launches.jsonl", {"job_id": self.job_id, "argv": argv, "pid": os.getpid()})
        self.record("queued")
        self.values = {
            "{job_id}": self.job_id,
            "{hostname}": socket.gethostname(),
            "{user}": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        }

    def fill(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace(key, value)
        return text

    def record(self, state: str, status: int | None = None) -> None:
        path = self.dir / "jobs" / f"{self.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "state": state, "status": status}))
        tmp.replace(path)

    def on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        # Whoever reads the output may be gone (rik's launcher killed): printing must not end the job silently.
        # The job's shell gets the default back (subprocess restores SIGPIPE in children).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for step in self.script["steps"]:
            if self.stop_signal is not None:
                return self.cancelled()
            if "print" in step:
                with contextlib.suppress(OSError):
                    os.write(2 if step["stderr"] else 1, self.fill(step["print"]).encode())
            elif "wait" in step:
                until = None if step["wait"] is None else time.monotonic() + step["wait"]
                while self.stop_signal is None and (until is None or time.monotonic() < until):
                    time.sleep(0.02)
            elif "exit" in step:
                self.record("exited", step["exit"])
                return int(step["exit"])
            elif "shell" in step:
                return self.shell(step["prompt"], step["env"])
        if self.stop_signal is not None:
            return self.cancelled()
        self.record("exited", 0)
        return 0

    def shell(self, prompt: str | None, env: Mapping[str, str]) -> int:
        environ = dict(os.environ)
        environ.update({k: self.fill(v) for k, v in env.items()})
        environ.pop("ENV", None)  # an interactive sh would read it
        if prompt is None:
            argv = ["/bin/sh", "-s"]
        else:
            argv = ["/bin/sh", "-i"]
            environ["PS1"] = self.fill(prompt)
            environ["HISTFILE"] = "/dev/null"
        self.child = subprocess.Popen(argv, env=environ)
        self.record("running")
        while True:
            status = self.child.poll()
            if status is not None:
                status = status if status >= 0 else 128 - status
                self.record("exited", status)
                return status
            if self.stop_signal is not None:
                return self.cancelled()
            time.sleep(0.02)

    def cancelled(self) -> int:
        """End the job as a scheduler does: its processes get SIGTERM, then SIGKILL after ``kill_wait``."""
        if self.script["on_cancel"]:
            with contextlib.suppress(OSError):
                os.write(2, self.fill(self.script["on_cancel"]).encode())
        victims = _descendants(os.getpid())
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + float(self.script["kill_wait"])
        while any(_alive(pid) for pid in victims) and time.monotonic() < deadline:
            if self.child is not None:
                self.child.poll()  # reap the shell
            time.sleep(0.02)
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.child.wait(1.0)
        assert self.stop_signal is not None
        status = 128 + self.stop_signal
        self.record("cancelled", status)
        return status


def _cancel(directory: Path, argv: list[str]) -> int:
    script = json.loads((directory / "script.json").read_text())
    with _locked(directory):
        _append(directory / "cancels.jsonl", {"argv": argv})
    found = False
    for word in argv:
        m = re.match(r"\d+", word)
        path = directory / "jobs" / f"{m.group(0)}.json" if m else None
        if path is None or not path.exists():
            continue
        found = True
        record = json.loads(path.read_text())
        if record["state"] in ("queued", "running") and _alive(record["pid"]):
            with contextlib.suppress(OSError):
                os.kill(record["pid"], signal.SIGTERM)
    if not found:
        sys.stderr.write(f"{script['program']}: no such job: {' '.join(argv)}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[1] not in ("job", "cancel"):
        sys.stderr.write("usage: rik.testing.fakejob DIR job|cancel [ARG…]\n")
        return 2
    directory, mode, rest = Path(args[0]), args[1], args[2:]
    if mode == "cancel":
        return _cancel(directory, rest)
    return _Job(directory, rest).run()
