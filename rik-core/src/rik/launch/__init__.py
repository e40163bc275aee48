"""The launcher that a rik kernelspec runs (``python -m rik --kernel-config JSON {connection_file}``), in parts.

- :mod:`.entry`: the command line (also the flags VS Code appends) and ``main``.
- :mod:`.job`: where the job runs, its cancel command, the records a restart or a reattach adopts.
- :mod:`.launcher`: :class:`~.launcher.Launcher`, the one ``select`` loop that ties the parts together: start or
  adopt a kernel, reconnect, restart in place, shut down or leave the kernel parked/detached.
- :mod:`.session`: the connection to the *holder*, the small detached shell on the submit host (or the kernel's
  host for SSH) that keeps the job's client and its input and output alive between connections.
- :mod:`.holder`: the POSIX sh that makes (or finds) the holder and attaches a connection to it.
- :mod:`.protocol`: the ``RIK-`` marker lines, parsed by a pure function.
- :mod:`.tunnel`: the ssh process that forwards the five channels, restarted with backoff.
- :mod:`.control`: the control channel, relayed locally so that a shutdown can be told from a restart.
- :mod:`.proc`: child processes that die with the launcher; :mod:`.logs`: logging that never shows the key.
"""
