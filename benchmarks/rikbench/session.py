"""One kernel's life as a notebook lives it: start, cells, output, interrupt, restart, reconnect, shutdown; then
everything it left behind, on every host, found and cleaned up so that the next kernel starts from the same state."""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from . import kernel as K
from .contenders import Contender
from .hosts import (
    Cluster,
    Footprint,
    World,
    alive,
    is_master,
    is_ssh,
    jobs_in,
    kill,
    proc_table,
    start_path,
    status_kib,
)

IPYKERNEL_STATE = (".ipython", ".local", ".cache", ".config", ".jupyter")


class QueueWatch:
    """The kernel's jobs polled from the shutdown request on, in a thread, every 0.05 s: when they leave the queue,
    as the cancel floor polls from its ``scancel``/``qdel`` (not once the launcher and every process are gone)."""

    def __init__(self, bench: Bench, scheduler: str, ours: set[str], t0: float) -> None:
        self.bench, self.scheduler, self.ours, self.t0 = bench, scheduler, ours, t0
        self.gone: float | None = None
        self.jobs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = [j for j in self.bench.queue(self.scheduler) if not self.ours or j.split()[0] in self.ours]
            if not jobs:
                self.gone = time.perf_counter() - self.t0
                return
            self.jobs = jobs
            time.sleep(0.05)

    def result(self, within: float) -> tuple[float | None, list[str]]:
        """Seconds from the request to the queue without the kernel's jobs, or None and the jobs still there
        ``within`` seconds after the request."""
        self._thread.join(max(0.0, self.t0 + within - time.perf_counter()))
        self._stop.set()
        self._thread.join()
        return self.gone, ([] if self.gone is not None else self.jobs)


class GoneWatch:
    """The kernel's processes polled from the shutdown request on, in a thread, every 0.01 s: when the last one is
    gone. (``shutdown_kernel`` itself looks at the kernel's process only every 0.1 s, which would round rik and its
    floors alike to a tenth of a second.)"""

    def __init__(self, pids: Iterable[int], t0: float) -> None:
        self.pids, self.t0 = set(pids), t0
        self.gone: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gone-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pids = {p for p in self.pids if alive(p)}
            if not self.pids:
                self.gone = time.perf_counter() - self.t0
                return
            time.sleep(0.01)

    def result(self, within: float) -> float | None:
        self._thread.join(max(0.0, self.t0 + within - time.perf_counter()))
        self._stop.set()
        self._thread.join()
        return self.gone


class Bench:
    """The run's scratch space, its Jupyter environment, and what a kernel can leave on the test hosts."""

    def __init__(self, args: argparse.Namespace, cluster: Cluster) -> None:
        self.args = args
        self.cluster = cluster
        self.user = args.user
        self.uid = pwd.getpwnam(self.user).pw_uid
        self.home = Path(pwd.getpwnam(self.user).pw_dir)
        self.ssh_config = cluster.users[self.user].ssh_config
        self.root = Path(tempfile.mkdtemp(prefix="rkb", dir="/tmp"))
        self.jupyter_env = {
            "JUPYTER_DATA_DIR": str(self.root / "data"),
            "JUPYTER_PATH": str(self.root / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.root / "run"),
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
        for path in self.jupyter_env.values():
            if path.startswith("/"):
                Path(path).mkdir(mode=0o700, exist_ok=True)
        os.environ.update(self.jupyter_env)
        self.ri_workdir = self.root / "ri-work"  # remote_ikernel's --workdir: a directory of the user's own
        self.ri_workdir.mkdir()
        os.chown(self.ri_workdir, self.uid, -1)
        os.chmod(self.root, 0o755)
        (self.root / "logs").mkdir()
        self.ri_venv: Path | None = None

    def end_masters(self, name: str) -> None:
        """End the ssh masters a contender's kernels of one round left for ControlPersist (runtime ``name``)."""
        marker = str(self.root / "rt" / name)
        kill(p for p, (_, cmd) in proc_table().items() if is_master(cmd) and marker in cmd)

    def runtime(self, name: str) -> Path:
        path = self.root / "rt" / name
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        return path

    # -- remote state ------------------------------------------------------------------------------------------
    def remote_pids(self, host: str) -> dict[int, str]:
        return {p.pid: p.cmdline for p in self.cluster.processes(host) if p.user == self.user}

    def files(self) -> set[str]:
        """Files a kernel may leave: in /tmp (the hosts share one file system), the user's home (not ipykernel's own
        state there, which every contender makes), remote_ikernel's working directory."""
        found = set()
        for folder in (Path("/tmp"), self.home, self.ri_workdir):
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    if folder == self.home and entry.name in IPYKERNEL_STATE:
                        continue
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_uid == self.uid or folder == self.ri_workdir:
                            found.add(entry.path)
        return found

    def queue(self, scheduler: str, user: str | None = None) -> list[str]:
        user = user or self.user
        argv = ["squeue", "-h", "-u", user, "-o", "%i %j %T"] if scheduler == "slurm" else ["qstat", "-u", user]
        out = self.cluster.run("rik-front", argv, user=user)
        return [line for line in out.splitlines() if line.strip() and not line.startswith(("job-ID", "---"))]

    def cancel(self, scheduler: str, ids: list[str], user: str | None = None) -> None:
        if ids:
            self.cluster.run("rik-front", ["scancel" if scheduler == "slurm" else "qdel", *ids], user=user or self.user)

    def describe_file(self, path: str, key: str) -> str:
        try:
            st = os.stat(path)
            mode = st.st_mode & 0o777
            text = Path(path).read_text(errors="replace") if os.path.isfile(path) and st.st_size < 2**20 else ""
            flags = (["holds the kernel's key"] if key and key in text else []) + (
                ["world-readable"] if mode & 0o004 else []
            )
            what = "file" if os.path.isfile(path) else "directory"
            return f"{what} {path} (mode {mode:o}{', ' + ', '.join(flags) if flags else ''})"
        except OSError:
            return f"{path} (vanished)"

    def cleanup(self, world: World, fp: Footprint) -> None:
        """End what a kernel left (only its own processes, by pid) and remove its files."""
        # The masters' connections (sshd on the hosts) stay: the next phase of the same round starts warm on them, as
        # a user's next kernel does; end_masters ends them after the round's last phase.
        remote = [p for p, cmd in fp.remote_pids_cmds().items() if not cmd.startswith("sshd:")]
        kill(p for p in [*fp.local, *remote] if alive(p))
        for path in self.files() - world.files_before:
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)

    # -- one kernel --------------------------------------------------------------------------------------------
    def session(self, c: Contender, phase: str, runtime: Path) -> dict[str, Any]:
        """cold: round trips and throughput; warm: interrupt; restart; reconnect. Every phase: footprint,
        shutdown until all gone, leftovers."""
        env = {**os.environ, **c.env}
        if c.kind == "rik":
            env["RIK_RUNTIME_DIR"] = str(runtime)
        world = World(self, c.hosts)
        result: dict[str, Any] = {"phase": phase}
        log_path = self.root / "logs" / f"{runtime.name}-{phase}.log"
        with open(log_path, "wb") as log_file:  # open for the kernel's life: a restart writes to it too
            return self._session(c, phase, runtime, env, world, result, log_path, log_file)

    def _session(
        self,
        c: Contender,
        phase: str,
        runtime: Path,
        env: dict[str, str],
        world: World,
        result: dict[str, Any],
        log_path: Path,
        log_file: Any,
    ) -> dict[str, Any]:
        t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
        km, kc, result["start"] = K.start(c.kernel, env, timeout=self.args.start_timeout, log_file=log_file)
        key = km.session.key.decode() if km.session.key else ""
        marker = str(runtime) if c.kind == "rik" else None
        fp = Footprint()

        def look() -> Footprint:
            now = world.footprint(K.launcher_pid(km), marker, jobs_in(log_path), fp.remote_pids() or None)
            fp.merge(now)
            return now

        try:
            K.settle(kc)
            K.execute(kc, "pass")
            fp.merge(world.footprint(K.launcher_pid(km), marker, jobs_in(log_path)))
            if c.key != "local":
                result["path"] = start_path(K.launcher_pid(km), t0, result["start"], fp.remote_pids_cmds())
            if phase == "cold":
                result["rtt"] = K.round_trips(kc, self.args.cells)
                result["mib_s"] = K.throughput(kc, self.args.mib, self.args.mib_samples)
            elif phase == "warm":
                result["interrupt"], result["interrupt_note"] = K.interrupt(km, kc)
            elif phase == "restart":
                result.update(K.restart(km, kc, self.args.restart_timeout))
                logged = jobs_in(log_path)  # both launchers write to this log: a new job would show up there
                if c.scheduler and result.get("jobs") == ["-", "-"] and logged:
                    result["restart_same_job"], result["jobs"] = len(set(logged)) == 1, logged
            else:
                look()

                def kill_ssh() -> int:  # the kernel's ssh processes and every master of its runtime directory
                    ssh = look().local_ssh() | {
                        p for p, (_, cmd) in proc_table().items() if is_ssh(cmd) and marker and marker in cmd
                    }
                    kill(ssh)
                    return len(ssh)

                result.update(K.reconnect(km, kc, kill_ssh, self.args.reconnect_timeout))
            if km.is_alive():
                look()
            result.update(fp.counts())
            launcher = K.launcher_pid(km)
            if c.key != "local" and launcher:
                hwm = status_kib(launcher, "VmHWM")
                result["launcher_hwm_mib"] = hwm / 1024 if hwm else None
            result["local_rss_mib"] = sum(status_kib(p, "VmRSS") or 0 for p in {**fp.local, **fp.masters}) / 1024
        except Exception:
            K.stop(km, kc)
            self.clear_jobs(c, log_path)
            self.cleanup(world, fp)
            raise
        result.update(self.shutdown(c, km, kc, world, fp, key, log_path, patient=phase in ("cold", "warm")))
        return result

    def clear_jobs(self, c: Contender, log_path: Path) -> None:
        if c.scheduler:
            self.cancel(c.scheduler, jobs_in(log_path))

    def shutdown(
        self,
        c: Contender,
        km: KernelManager,
        kc: Any,
        world: World,
        fp: Footprint,
        key: str,
        log_path: Path,
        patient: bool = True,
    ) -> dict[str, Any]:
        """shutdown_kernel until every process of the kernel is gone on every host (ssh masters, kept on purpose for
        the next kernel, and the sshd processes of their connections excepted), then what is left."""
        watch = dict(fp.local)
        for host, procs in fp.remote.items():
            watch.update({pid: f"{host}: {cmd}" for pid, cmd in procs.items() if not cmd.startswith("sshd:")})
        t0 = time.perf_counter()
        watch_queue = QueueWatch(self, c.scheduler, set(jobs_in(log_path)), t0) if c.scheduler else None
        watch_gone = GoneWatch(watch, t0)
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        returned = time.perf_counter() - t0
        gone = watch_gone.result(self.args.gone_timeout)
        remaining = {p: cmd for p, cmd in watch.items() if alive(p)}
        km.cleanup_resources()
        left = [f"process {cmd}" for cmd in remaining.values()]
        late = world.footprint(None, None, jobs_in(log_path), fp.remote_pids())
        for host, procs in late.remote.items():
            left += [
                f"process {host}: {cmd}" for p, cmd in procs.items() if p not in watch and not cmd.startswith("sshd:")
            ]
        left += [self.describe_file(path, key) for path in sorted(self.files() - world.files_before)]
        with contextlib.suppress(OSError):
            if key and key in (self.home / ".bash_history").read_text(errors="replace"):
                left.append(f"the kernel's key in {self.home / '.bash_history'}")
        queue_gone = None
        if c.scheduler and watch_queue is not None:
            queue_gone, jobs = watch_queue.result(15 if patient else 2)
            if jobs:
                left.append(f"{c.scheduler} job(s) still queued: {'; '.join(jobs)}")
                self.cancel(c.scheduler, [j.split()[0] for j in jobs])
            # Files the job's node left (e.g. SGE's per-job TMPDIR) are gone once the job left the queue.
            left = [item for item in left if not item.startswith(("file", "directory"))]
            left += [self.describe_file(path, key) for path in sorted(self.files() - world.files_before)]
        self.cleanup(world, fp)
        return {
            "shutdown_returned": returned,
            "shutdown_gone": gone,
            "left": left,
            "queue_gone": queue_gone,
            "masters_kept": sum(alive(p) for p in fp.masters),
        }
