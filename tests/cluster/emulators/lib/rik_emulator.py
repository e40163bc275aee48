#!/usr/bin/python3
"""TEST FIXTURE for rik -- NOT a batch system.

An emulator of the interactive-job clients of LSF (OpenLava / IBM): ``bsub -Is``, ``bkill``, ``bjobs``, for a
scheduler no LSF-compatible server of which can be obtained for rik's test machine (IBM LSF is proprietary;
OpenLava's later releases were withdrawn).  PBS is tested against a real OpenPBS server (tests/cluster/pbs.sh).

It prints the strings the real programs print (tests/cluster/emulators/README.md lists which are known to be
exact, from OpenLava's sources and IBM's LSF documentation, and which are guesses) and gives the user a REAL
interactive shell on a compute test host (rik-c1 / rik-c2) through ``ssh -tt``.  There is no server: the client
itself "dispatches" its job.  Job state lives in a spool directory shared by all test users
(``/var/spool/rik-emulators/lsf``, made by ``tests/cluster/emulators.sh up``); the job's processes on the node run
under a small supervisor (``jobshell``) that kills every process of the job when the job ends, is killed, or
loses its client -- like a real execution daemon.

Queues are test knobs: ``full`` never dispatches, ``slow`` dispatches after 3 s, any other at once.

This file is the entry point (``rik_emulator.py jobshell|cleanup ...``, and ``main()`` for the programs in
../lsf/bin); the code is in the package next to it, ``rik_emu``: ``base`` (knobs, /proc, the spool), ``job``
(the node's supervisor and the interactive client), ``bsub``, ``bjobs`` (bkill and bjobs).

Standard library only; run by /usr/bin/python3 on rik-front (clients) and on the nodes (jobshell).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from rik_emu.base import Spool, end_processes, ref_alive
from rik_emu.bjobs import bjobs, bkill
from rik_emu.bsub import bsub
from rik_emu.job import jobshell

FLAVORS = ("lsf",)


def cleanup(args: list[str]) -> int:
    """emulators.sh down (root): end every emulated job's processes by the pids in the spool."""
    for flavor in FLAVORS:
        spool = Spool(flavor, "cleanup")
        for job in spool.all():
            if any(ref_alive(job.get(k)) for k in ("shell", "ssh", "client")):
                end_processes(job)
                print(f"rik emulators: ended {flavor} job {job['id']} ({job['owner']})", file=sys.stderr)
    return 0


COMMANDS = {"bsub": bsub, "bkill": bkill, "bjobs": bjobs, "jobshell": jobshell, "cleanup": cleanup}


def main(prog: str, args: list[str]) -> int:
    try:
        return COMMANDS[prog](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(COMMANDS)}}} ARGS  (rik test fixture)")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
