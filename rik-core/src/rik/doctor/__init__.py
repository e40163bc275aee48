"""``rik doctor``: check a kernel's setup step by step, one line per check: ok, or the problem and how to fix it.

For each rik kernel (all, or those named) it checks, in the order a kernel needs them:

1. the plugin of its interface is installed and builds the job's command;
2. the ssh chain hop by hop: the host is reachable from the hop before it, its host key is known, and the login
   works without a prompt (or with the kernel's askpass program);
3. that each hop allows the forwarding rik needs there: TCP to reach the next hop (``ssh -J`` and the tunnel to a
   job's node), Unix sockets (or TCP) on the kernel's own host, tried for real and recognising sshd's
   "administratively prohibited";
4. on the submit host (or the kernel's host): the scheduler's programs exist, the queue/partition, parallel
   environment or account exist (what the scheduler's plugin knows how to ask), the login shell starts with the
   pre-command, the kernel's program exists there and starts (``import ipykernel``), the working directory exists.

Doctor logs in once per host: a master connection per hop, made fresh for each run and ended with it, which every
check on that hop rides (the next hop is reached through it). It never uses the masters running kernels share, so
it sees the hosts' sshd configuration as a new kernel would, and hears sshd's refusals itself; each check has a
short time limit. rik's own ssh settings (the file that ``SSHTransport`` writes, with the kernel's
``--ssh-config``, ``~/.ssh/config`` and askpass) are used through ``-F``.

The package: :mod:`.report` (what is reported), :mod:`.probe` (running probes here or through doctor's own ssh
connections), :mod:`.chain` (the ssh chain hop by hop), :mod:`.target` (the submit host: scheduler, shell, kernel,
working directory) and :mod:`.command` (the command that runs them all). What doctor asks a scheduler comes from
its plugin (``rik_build_doctor_queries``).
"""

from __future__ import annotations

from .command import Doctor, diagnose, doctor
from .report import OK, PROBLEM, SKIPPED, Check, Report

__all__ = ["OK", "PROBLEM", "SKIPPED", "Check", "Doctor", "Report", "diagnose", "doctor"]
