"""Talking to a kernel through jupyter_client, the way a notebook does, and timing what the user feels."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.manager import KernelManager


class Failed(Exception):
    pass


#: Every launcher this run started, ended at the end of the run if one outlived its kernel.
LAUNCHERS: set[int] = set()


def launcher_pid(km: KernelManager) -> int | None:
    proc = getattr(km.provisioner, "process", None)
    if proc is not None:
        LAUNCHERS.add(proc.pid)
    return proc.pid if proc is not None else None


def wait_for(get: Callable[..., dict], pred: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failed(f"no matching message within {timeout:g} s")
        try:
            msg = get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        if pred(msg):
            return msg


def drain(kc: Any) -> None:
    for get in (kc.get_shell_msg, kc.get_iopub_msg):
        with contextlib.suppress(queue.Empty):
            while True:
                get(timeout=0.05)


def wait_ready(km: KernelManager, kc: Any, t0: float, timeout: float) -> float:
    """Seconds since ``t0`` until the first kernel_info reply; requests resent every second, as jupyter_client does."""
    next_send = 0.0
    while True:
        now = time.perf_counter()
        if now - t0 > timeout:
            raise Failed(f"not ready within {timeout:g} s")
        if now >= next_send:
            kc.kernel_info()
            next_send = now + 1.0
        try:
            msg = kc.get_shell_msg(timeout=0.02)
        except queue.Empty:
            if not km.is_alive():
                raise Failed("the launcher exited before the kernel was ready") from None
            continue
        if msg["msg_type"] == "kernel_info_reply":
            return time.perf_counter() - t0


def start(kernel: str, env: dict[str, str], timeout: float, log_file: Any = None) -> tuple[KernelManager, Any, float]:
    """start_kernel until the first kernel_info reply."""
    km = KernelManager(kernel_name=kernel)
    t0 = time.perf_counter()
    km.start_kernel(env=env, stdout=log_file, stderr=log_file)
    launcher_pid(km)
    kc = km.client()
    kc.start_channels()
    try:
        return km, kc, wait_ready(km, kc, t0, timeout)
    except Failed:
        stop(km, kc)
        raise


def settle(kc: Any, timeout: float = 30) -> None:
    """Make sure IOPub is subscribed (a PUB socket drops what it sends before): kernel_info until IOPub speaks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kc.kernel_info()
        try:
            kc.get_iopub_msg(timeout=0.3)
            break
        except queue.Empty:
            continue
    time.sleep(0.2)
    drain(kc)


def execute(kc: Any, code: str, timeout: float = 60, on_iopub: Callable[[dict], None] | None = None) -> None:
    """One cell: its execute_reply and its idle status."""
    msg_id = kc.execute(code, store_history=False)
    got_reply = got_idle = False
    deadline = time.monotonic() + timeout
    while not (got_reply and got_idle):
        if time.monotonic() > deadline:
            raise Failed(f"{code[:30]!r}: no reply within {timeout:g} s")
        if not got_reply:
            with contextlib.suppress(queue.Empty):
                reply = kc.get_shell_msg(timeout=0 if not got_idle else 0.5)
                if reply["parent_header"].get("msg_id") == msg_id:
                    got_reply = True
                    if reply["content"]["status"] != "ok":
                        raise Failed(f"{code[:30]!r}: {reply['content'].get('ename')}")
        if not got_idle:
            with contextlib.suppress(queue.Empty):
                msg = kc.get_iopub_msg(timeout=0.5)
                if msg["parent_header"].get("msg_id") == msg_id:
                    if on_iopub:
                        on_iopub(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        got_idle = True


def output(kc: Any, code: str, timeout: float = 60) -> str:
    """What a cell prints."""
    text: list[str] = []
    execute(kc, code, timeout, lambda m: text.append(m["content"]["text"]) if m["msg_type"] == "stream" else None)
    return "".join(text)


# The kernel's job: from the environment, else (qlogin's login shell has no JOB_ID) from the job's process among
# its ancestors (sge_shepherd-N, slurmstepd: [N.step]).
JOB_ID = """import os, re
_j, _p = os.environ.get('SLURM_JOB_ID') or os.environ.get('JOB_ID') or '-', os.getpid()
while _j == '-' and _p > 1:
    _c = open(f'/proc/{_p}/cmdline', 'rb').read().split(b'\\0')[0].decode(errors='replace')
    _m = re.match(r'(?:sge_shepherd-|slurmstepd: \\[)(\\d+)', _c)
    _j = _m.group(1) if _m else '-'
    _p = int(open(f'/proc/{_p}/stat').read().rpartition(')')[2].split()[1])
print(_j, os.getpid())"""


def round_trips(kc: Any, cells: int) -> list[float]:
    times = []
    for _ in range(cells):
        t0 = time.perf_counter()
        execute(kc, "pass", timeout=30)
        times.append(time.perf_counter() - t0)
    return times


def throughput(kc: Any, mib: int, samples: int) -> list[float]:
    """MiB/s of stdout from ``samples`` cells of ``mib`` MiB each, execute_request until idle."""
    lines = mib * 1024
    code = (
        f"import sys\n_l = 'x' * 1023 + '\\n'\nfor _i in range({lines}):\n    sys.stdout.write(_l)\nsys.stdout.flush()"
    )
    rates = []
    got = [0]

    def count(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            got[0] += len(msg["content"]["text"])

    for _ in range(samples):
        got[0] = 0
        t0 = time.perf_counter()
        execute(kc, code, timeout=300, on_iopub=count)
        elapsed = time.perf_counter() - t0
        if got[0] != lines * 1024:
            raise Failed(f"throughput: received {got[0]} of {lines * 1024} bytes")
        rates.append(mib / elapsed)
    return rates


def interrupt(km: KernelManager, kc: Any) -> tuple[float | None, str]:
    """Seconds from interrupt_kernel() to the KeyboardInterrupt on IOPub, or None and what happened instead."""
    msg_id = kc.execute("import time; time.sleep(30)", store_history=False)
    wait_for(
        kc.get_iopub_msg, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "execute_input", 30
    )
    time.sleep(0.3)
    t0 = time.perf_counter()
    km.interrupt_kernel()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            if not km.is_alive():
                return None, "the launcher died on the interrupt"
            continue
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
            latency = time.perf_counter() - t0
            with contextlib.suppress(Failed):
                wait_for(kc.get_shell_msg, lambda m: m["parent_header"].get("msg_id") == msg_id, 10)
            return latency, "ok"
    return None, "no KeyboardInterrupt within 15 s" + ("" if km.is_alive() else "; the launcher died")


def restart(km: KernelManager, kc: Any, timeout: float) -> dict[str, Any]:
    """jupyter_client's restart_kernel until the new kernel's first kernel_info reply; whether it is a fresh kernel
    in the same job (same job id, no ``x``)."""
    execute(kc, "x = 41", timeout=15)
    before = output(kc, JOB_ID, timeout=15).split()
    t0 = time.perf_counter()
    try:
        km.restart_kernel(now=False)
        took = wait_ready(km, kc, t0, timeout)
    except Exception as exc:
        return {"restart": None, "restart_note": f"{type(exc).__name__}: {exc}"}
    try:
        settle(kc, timeout=10)
        after = output(kc, JOB_ID, timeout=15).split()
        fresh = output(kc, "print('x' in dir())", timeout=15).strip() == "False"
    except Failed as exc:
        return {"restart": None, "restart_note": f"the new kernel answered kernel_info, then not a cell ({exc})"}
    same_job = before[0] == after[0] and before[0] != "-"
    note = "ok" if fresh else "x survived the restart"
    return {"restart": took, "restart_note": note, "restart_same_job": same_job, "jobs": [before[0], after[0]]}


def reconnect(km: KernelManager, kc: Any, kill_ssh: Callable[[], int], timeout: float) -> dict[str, Any]:
    """Every local ssh process of the kernel killed at once (a network change: the network is back at once), until
    a cell that needs the kernel's state answers. ``None`` with a note when it does not come back."""
    execute(kc, "x = 41", timeout=15)
    killed = kill_ssh()
    t0 = time.perf_counter()
    sent: set[str] = set()
    next_send = 0.0
    while time.perf_counter() - t0 < timeout:
        now = time.perf_counter()
        if not km.is_alive():
            return {"reconnect": None, "reconnect_note": f"the launcher exited ({killed} ssh killed): kernel lost"}
        if now >= next_send:  # a request sent while the tunnel is down may be lost: resend, take the first answer
            sent.add(kc.execute("print(x + 1)", store_history=False))
            next_send = now + 2.0
        with contextlib.suppress(queue.Empty):
            msg = kc.get_iopub_msg(timeout=0.05)
            if msg["parent_header"].get("msg_id") in sent:
                if msg["msg_type"] == "stream" and msg["content"]["text"].strip() == "42":
                    return {"reconnect": time.perf_counter() - t0, "reconnect_note": "ok", "ssh_killed": killed}
                if msg["msg_type"] == "error":
                    return {"reconnect": None, "reconnect_note": "a kernel answered without its state (a new one)"}
    return {"reconnect": None, "reconnect_note": f"no answer within {timeout:g} s ({killed} ssh killed)"}


def stop(km: KernelManager, kc: Any) -> None:
    with contextlib.suppress(Exception):
        kc.stop_channels()
    with contextlib.suppress(Exception):
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    with contextlib.suppress(Exception):
        km.cleanup_resources()


def stop_nicely(km: KernelManager, kc: Any) -> None:
    with contextlib.suppress(Exception):
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
