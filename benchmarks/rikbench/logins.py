"""One login per host: how many times a password-only user is asked, through the three-hop chain with ``--askpass``.

The test user ``rikpw`` has a password and no key (``tests/cluster/README.md``). The kernel's askpass program is a
script that writes each prompt it is given to a file and then answers it with the cluster's own askpass; the prompt
names the host (``rikpw@rik-gw's password:``), so the file counts prompts per host. Target: one per host for as
long as a master lives, whatever happens to the kernels.
"""

from __future__ import annotations

import copy
import os
import pwd
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from . import kernel as K
from .contenders import CHAIN, rik_add
from .hosts import Footprint, World, kill
from .session import Bench
from .util import log

USER = "rikpw"
HOST_IN_PROMPT = re.compile(r"@([A-Za-z0-9_.-]+)")


class Prompts:
    def __init__(self, root: Path, answer: str) -> None:
        self.file = root / "prompts.log"
        self.file.touch()
        self.program = root / "count-askpass"
        self.program.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {self.file}\nexec {answer} "$@"\n')
        self.program.chmod(0o700)
        self.seen = 0

    def new(self) -> dict[str, int]:
        """Prompts per host since the last call."""
        lines = self.file.read_text().splitlines()
        fresh, self.seen = lines[self.seen :], len(lines)
        return dict(Counter(m.group(1) if (m := HOST_IN_PROMPT.search(line)) else line for line in fresh))


def _start(name: str, env: dict[str, str], log_file: Any) -> tuple[KernelManager, Any]:
    km = KernelManager(kernel_name=name)
    km.start_kernel(env=env, stdout=log_file, stderr=log_file)
    K.launcher_pid(km)
    kc = km.client()
    kc.start_channels()
    return km, kc


def _answer(km: KernelManager, kc: Any, t0: float, timeout: float) -> str:
    try:
        K.wait_ready(km, kc, t0, timeout)
        K.settle(kc)
        return "ok" if K.output(kc, "print(6 * 7)", timeout=timeout).strip() == "42" else "wrong answer"
    except K.Failed as exc:
        return str(exc)


def _tunnel_ssh(fp: Footprint) -> set[int]:
    return {p for p, cmd in fp.local.items() if " -L " in f" {cmd} "}


def logins(bench: Bench) -> dict[str, Any]:
    cluster = bench.cluster
    user = cluster.users.get(USER)
    if user is None or not user.askpass:
        return {"error": f"the test cluster has no password-only user {USER}"}
    pw = copy.copy(bench)  # the same run, as the password user (processes, files, queue)
    pw.user, pw.uid, pw.home = USER, user.uid, Path(pwd.getpwnam(USER).pw_dir)
    prompts = Prompts(bench.root, user.askpass)
    name = rik_add(
        Path(sys.executable).parent, "-i", "ssh", "-x", "rik-c1", "-t", "rik-gw", "rik-front",
        "--ssh-config", user.ssh_config, "--askpass", str(prompts.program), "-n", "Pw",
    )  # fmt: skip
    timeout = bench.args.start_timeout
    out: dict[str, Any] = {"user": USER, "chain": list(CHAIN), "scenarios": {}}

    def scenario(key: str, title: str, fn: Any) -> None:
        runtime = bench.runtime(f"logins-{len(out['scenarios'])}")
        env = {**os.environ, "RIK_RUNTIME_DIR": str(runtime)}
        world = World(pw, CHAIN)
        fp = Footprint()
        log_path = bench.root / "logs" / f"logins-{len(out['scenarios'])}.log"
        prompts.new()
        with open(log_path, "wb") as log_file:
            try:
                steps = fn(env, world, fp, log_file, str(runtime))
            except Exception as exc:
                steps = [{"step": "failed", "result": f"{type(exc).__name__}: {exc}", "prompts": prompts.new()}]
        total: Counter[str] = Counter()
        for step in steps:
            total.update(step["prompts"])
        out["scenarios"][key] = {"title": title, "steps": steps, "prompts": dict(total)}
        log(f"  logins: {title}: {dict(total)} ({'; '.join(s['step'] + ' ' + s['result'] for s in steps)})")
        pw.cleanup(world, fp)
        kill(world.footprint(None, str(runtime)).masters, 15)

    def in_a_row(env: dict[str, str], world: World, fp: Footprint, log_file: Any, marker: str) -> list[dict]:
        steps = []
        for i in range(3):
            km, kc = _start(name, env, log_file)
            result = _answer(km, kc, time.perf_counter(), timeout)
            fp.merge(world.footprint(K.launcher_pid(km), marker))
            K.stop_nicely(km, kc)
            steps.append({"step": f"kernel {i + 1}", "result": result, "prompts": prompts.new()})
        return steps

    def at_once(env: dict[str, str], world: World, fp: Footprint, log_file: Any, marker: str) -> list[dict]:
        pairs = [_start(name, env, log_file) for _ in range(3)]
        t0 = time.perf_counter()
        results = [_answer(km, kc, t0, timeout) for km, kc in pairs]
        for km, _ in pairs:
            fp.merge(world.footprint(K.launcher_pid(km), marker))
        for km, kc in pairs:
            K.stop_nicely(km, kc)
        return [{"step": "3 kernels at once", "result": ", ".join(results), "prompts": prompts.new()}]

    def restarts(env: dict[str, str], world: World, fp: Footprint, log_file: Any, marker: str) -> list[dict]:
        km, kc = _start(name, env, log_file)
        steps = [{"step": "kernel", "result": _answer(km, kc, time.perf_counter(), timeout), "prompts": prompts.new()}]
        try:
            for what in ("tunnel killed", "tunnel killed again", "rik doctor while it runs", "every local ssh killed"):
                if what.startswith("rik doctor"):
                    doctor = subprocess.run(
                        [str(Path(sys.executable).parent / "rik"), "doctor", name],
                        env=env, capture_output=True, text=True, timeout=120, check=False,
                    )  # fmt: skip
                    steps.append({"step": what, "result": f"exit {doctor.returncode}", "prompts": prompts.new()})
                    continue
                now = world.footprint(K.launcher_pid(km), marker)
                fp.merge(now)
                kill(_tunnel_ssh(now) if what.startswith("tunnel") else now.local_ssh())
                result = _answer(km, kc, time.perf_counter(), 20) if km.is_alive() else "the launcher exited"
                result = "the launcher exited" if not km.is_alive() else result
                steps.append({"step": what, "result": result, "prompts": prompts.new()})
                if result != "ok":
                    break
        finally:
            K.stop_nicely(km, kc)
        return steps

    scenario("in_a_row", "3 kernels in a row", in_a_row)
    scenario("at_once", "3 kernels at once", at_once)
    scenario("restarts", "one kernel: its tunnel killed twice, rik doctor, then every local ssh killed", restarts)
    return out
