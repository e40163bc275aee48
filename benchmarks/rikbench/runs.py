"""The runs: every contender's kernels and the cancel floors in interleaved rounds (the order rotates and
reverses every round, so that a slow spell of the machine hits everyone), then N kernels started at once
(``start_kernel`` back to back, all waited for together) on one host, through the three-hop chain and locally."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import time
import uuid
from typing import Any

import zmq
from jupyter_client.manager import KernelManager

from . import kernel as K
from .contenders import BY_KEY, CANCEL_PROBES, Contender
from .hosts import Footprint, World, alive, rss_mib, status_kib
from .session import Bench
from .util import fmt_ms, fmt_num, fmt_s, log, pct


def phases(bench: Bench, c: Contender) -> tuple[str, ...]:
    return ("cold", *(("warm",) if c.warm else ()), *(() if bench.args.no_life else c.extra))


def one_kernel(bench: Bench, c: Contender, phase: str, r: int) -> dict[str, Any]:
    """A session, with one retry after a pause: other engineers' tests reconfigure the shared test hosts' sshd for a
    moment (forwarding off, keys changed). The failure is kept in the results either way."""
    failures = []
    for attempt in range(2):
        runtime = bench.runtime(f"{c.key}-{r}" + ("r" if attempt else ""))
        try:
            result = bench.session(c, phase, runtime)
            if failures:
                result["retried_after"] = failures[0]
            return result
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            log(f"    {c.key} {phase}: FAILED {exc}{'; retrying' if attempt == 0 else ''}")
            time.sleep(3 if attempt == 0 else 0)
    return {"phase": phase, "error": "; ".join(failures)}


def cancel_floor(bench: Bench, scheduler: str) -> dict[str, Any]:
    """A job started by hand on the submit host (``srun`` / ``qrsh`` running ``sleep``), then ``scancel`` / ``qdel``
    once it runs, until it has left the queue: polled as rik's shutdowns are."""
    name = "bc" + uuid.uuid4().hex[:6]
    if scheduler == "slurm":
        argv = ["srun", "--job-name", name, "--nodes=1", "--ntasks=1", "sleep", "300"]
    else:
        argv = ["qrsh", "-now", "n", "-N", name, "sleep", "300"]
    home = str(bench.home)
    proc = subprocess.Popen(
        bench.cluster.argv("rik-front", argv, bench.user),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    job = None
    try:
        deadline = time.monotonic() + 30
        while job is None and time.monotonic() < deadline:
            for line in bench.queue(scheduler):
                cols = line.split()
                if name in cols and ("RUNNING" in cols if scheduler == "slurm" else "r" in cols):
                    job = cols[0]
            time.sleep(0.05)
        if job is None:
            return {"error": f"the {scheduler} job did not start running within 30 s"}
        time.sleep(0.3)
        t0 = time.perf_counter()
        bench.cancel(scheduler, [job])
        while any(line.split()[0] == job for line in bench.queue(scheduler)):
            if time.perf_counter() - t0 > 15:
                return {"error": f"job {job} still queued 15 s after the cancel"}
            time.sleep(0.05)
        return {"queue_gone": time.perf_counter() - t0, "job": job}
    finally:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if job is None:
            bench.cancel(scheduler, [line.split()[0] for line in bench.queue(scheduler) if name in line.split()])


def kernel_rounds(bench: Bench, contenders: list[Contender], probes: list[str]) -> dict[str, list[dict[str, Any]]]:
    units: list[Contender | str] = [*contenders, *probes]
    samples: dict[str, list[dict[str, Any]]] = {c.key if isinstance(c, Contender) else c: [] for c in units}
    for r in range(bench.args.rounds):
        order = units[r % len(units) :] + units[: r % len(units)]
        if r % 2:
            order.reverse()
        log(f"round {r + 1}/{bench.args.rounds}: {' '.join(u.key if isinstance(u, Contender) else u for u in order)}")
        for unit in order:
            if isinstance(unit, str):
                entry = {"round": r, "probe": cancel_floor(bench, CANCEL_PROBES[unit])}
                samples[unit].append(entry)
                log(
                    f"    {unit:10} cancel → gone {fmt_s(entry['probe'].get('queue_gone'))} {entry['probe'].get('error', '')}"
                )
                continue
            entry = {"round": r}
            for phase in phases(bench, unit):
                entry[phase] = one_kernel(bench, unit, phase, r)
            bench.end_masters(f"{unit.key}-{r}")
            samples[unit.key].append(entry)
            cold, warm = entry["cold"], entry.get("warm", {})
            restart, reconnect = entry.get("restart", {}), entry.get("reconnect", {})
            log(
                f"    {unit.key:10} start {fmt_s(cold.get('start'))}/{fmt_s(warm.get('start'))} "
                f"rtt p50 {fmt_ms(pct(cold.get('rtt'), 50))} {fmt_num(max(cold.get('mib_s') or [0]))} MiB/s "
                f"int {fmt_ms(warm.get('interrupt'))} gone {fmt_s(cold.get('shutdown_gone'))}/"
                f"{fmt_s(warm.get('shutdown_gone'))} queue {fmt_s(cold.get('queue_gone'))} "
                f"restart {fmt_s(restart.get('restart'))} {restart.get('restart_note', '')} reconnect "
                f"{fmt_s(reconnect.get('reconnect'))} {reconnect.get('reconnect_note', '')} left {len(cold.get('left', [])) + len(warm.get('left', []))}"
                + "".join(
                    f" ERROR({p}) {entry[p]['error']}"
                    for p in entry
                    if isinstance(entry[p], dict) and "error" in entry[p]
                )
            )
    return samples


SCALED = ("local", "rik-gw", "rik-chain")


def scaling(bench: Bench, c: Contender, n: int, r: int) -> dict[str, Any]:
    env = {**os.environ, **c.env}
    runtime = None
    if c.kind == "rik":
        runtime = bench.runtime(f"scale-{c.key}-{n}-{r}")
        env["RIK_RUNTIME_DIR"] = str(runtime)
    world = World(bench, c.hosts)
    conns_before = {h: bench.cluster.sshd_connections(h, bench.user) for h in c.hosts}
    kms: list[tuple[KernelManager, Any]] = []
    began: list[float] = []
    t0 = time.perf_counter()
    for _ in range(n):
        km = KernelManager(kernel_name=c.kernel)
        began.append(time.perf_counter())
        km.start_kernel(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        K.launcher_pid(km)
        kc = km.client()
        kc.start_channels()
        # A send never blocks the harness: a kernel whose shell socket stops taking messages (seen once with 16
        # local kernels) is counted as not ready instead of hanging the whole run.
        kc.shell_channel.socket.setsockopt(zmq.SNDTIMEO, 200)
        kms.append((km, kc))
    ready: dict[int, float] = {}
    sent: dict[int, float] = {}
    while len(ready) < n and time.perf_counter() - t0 < bench.args.start_timeout:
        now = time.perf_counter()
        for i, (_km, kc) in enumerate(kms):
            if i in ready:
                continue
            if now >= sent.get(i, 0.0):
                with contextlib.suppress(zmq.Again):
                    kc.kernel_info()
                sent[i] = now + 1.0
            with contextlib.suppress(queue.Empty):
                while True:
                    if kc.get_shell_msg(timeout=0.002)["msg_type"] == "kernel_info_reply":
                        ready[i] = time.perf_counter()
                        break
    fp = Footprint()
    for km, _ in kms:
        fp.merge(world.footprint(K.launcher_pid(km), str(runtime) if runtime else None))
    conns = {h: len(bench.cluster.sshd_connections(h, bench.user, conns_before[h])) for h in c.hosts}
    launchers = [p for p in (K.launcher_pid(km) for km, _ in kms) if p]
    hwm = [status_kib(p, "VmHWM") or 0 for p in launchers]
    starts = [ready[i] - began[i] for i in sorted(ready)]
    result = {
        "n": n,
        "contender": c.key,
        "round": r,
        "ready": len(ready),
        "all_ready": max(ready.values()) - t0 if len(ready) == n else None,
        "start_p50": pct(starts, 50),
        "start_p95": pct(starts, 95),
        "starts": starts,
        "launcher_hwm_mib_each": sum(hwm) / len(hwm) / 1024 if hwm and c.kind == "rik" else None,
        "local_rss_mib": rss_mib({**fp.local, **fp.masters}),
        "remote_rss_mib": rss_mib(fp.remote_pids()),
        "ssh_conns": conns,
        **fp.counts(),
    }
    watch = {
        **fp.local,
        **{p: cmd for procs in fp.remote.values() for p, cmd in procs.items() if not cmd.startswith("sshd:")},
    }
    t1 = time.perf_counter()
    # All asked at once (no threads: jupyter_client's synchronous calls share one event loop), then each waited for.
    for km, kc in kms:
        kc.stop_channels()
        with contextlib.suppress(Exception):
            km.request_shutdown()
    for km, _ in kms:
        with contextlib.suppress(Exception):
            km.finish_shutdown(waittime=5)
            km.cleanup_resources()
    while any(alive(p) for p in watch) and time.perf_counter() - t1 < bench.args.gone_timeout:
        time.sleep(0.01)
    result["shutdown_gone"] = None if any(alive(p) for p in watch) else time.perf_counter() - t1
    bench.cleanup(world, fp)
    return result


def scaling_rounds(bench: Bench) -> list[dict[str, Any]]:
    jobs = [(n, key) for n in bench.args.scale for key in SCALED if BY_KEY[key].kernel]
    out = []
    for r in range(bench.args.scale_rounds):
        for n, key in jobs if r % 2 == 0 else list(reversed(jobs)):
            try:
                res = scaling(bench, BY_KEY[key], n, r)
            except Exception as exc:
                res = {"n": n, "contender": key, "round": r, "error": f"{type(exc).__name__}: {exc}"}
            log(
                f"  scale {key:9} x{n:<2} ready {res.get('ready')}/{n} all {fmt_s(res.get('all_ready'))} "
                f"p50 {fmt_s(res.get('start_p50'))} p95 {fmt_s(res.get('start_p95'))} launchers "
                f"{fmt_num(res.get('launcher_hwm_mib_each'))} MiB each, remote {fmt_num(res.get('remote_rss_mib'))} MiB, "
                f"ssh conns {res.get('ssh_conns')}, gone {fmt_s(res.get('shutdown_gone'))} {res.get('error', '')}"
            )
            out.append(res)
    return out


PAIRED = (("rik-gw", "raw-gw"), ("rik-chain", "raw-chain"))


def throughput_pairs(bench: Bench) -> dict[str, list[float]]:
    """Output throughput of rik and its floor, both kernels up at once and sampled in ABBA blocks (rik, floor,
    floor, rik), so that both see the same minutes of a shared machine; one rate per contender per block."""
    out: dict[str, list[float]] = {}
    for rik_key, floor_key in PAIRED:
        kernels = {}
        try:
            for key in (rik_key, floor_key):
                c = BY_KEY[key]
                env = {**os.environ, **c.env, "RIK_RUNTIME_DIR": str(bench.runtime(f"tput-{key}"))}
                km, kc, _ = K.start(c.kernel, env, timeout=bench.args.start_timeout, log_file=subprocess.DEVNULL)
                kernels[key] = (km, kc)
                K.settle(kc)
                K.throughput(kc, bench.args.tput_mib, 1)  # warm-up: imports, buffers
            rates: dict[str, list[float]] = {rik_key: [], floor_key: []}
            for _ in range(bench.args.tput_blocks):
                block: dict[str, list[float]] = {rik_key: [], floor_key: []}
                for key in (rik_key, floor_key, floor_key, rik_key) * bench.args.tput_abba:
                    block[key] += K.throughput(kernels[key][1], bench.args.tput_mib, 1)
                for key, vals in block.items():  # the block's mean rate (harmonic: the same bytes each time)
                    rates[key].append(len(vals) / sum(1 / v for v in vals))
            out |= rates
            ratios = [f / r for r, f in zip(rates[rik_key], rates[floor_key], strict=True)]
            log(f"  throughput {rik_key} vs {floor_key}: floor/rik per block {', '.join(f'{x:.2f}' for x in ratios)}")
        except Exception as exc:
            log(f"  throughput {rik_key} vs {floor_key}: FAILED {exc}")
            out[f"{rik_key}.error"] = [str(exc)]  # type: ignore[list-item]
        finally:
            for km, kc in kernels.values():
                K.stop_nicely(km, kc)
    return out
