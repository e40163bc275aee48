"""The kernel bootstrap: a POSIX sh script rik sends over the job's standard input.

Nothing of rik is installed on the remote side: this script is all there is. It

1. makes a private directory (0700) and writes the kernel's connection file into it (0600) with the shell's
   *builtin* ``printf``, so the HMAC key is never on a command line, in a job script or in a file others read;
2. starts the kernel (after ``cd`` and the pre-command, in the user's login shell so ``module``/``conda`` work;
   a kernel on this machine without a pre-command starts from a plain ``sh``, in the environment Jupyter gave it),
   letting it bind its own endpoints: Unix sockets in the private directory (``ipc``), or loopback TCP ports
   picked on the remote host just before it starts (``tcp``), retried on a collision;
3. removes the connection file once the kernel has bound its sockets, and reports on one line what it got;
4. reads control words on its standard input: ``ping`` (a launcher is connected), ``int`` (interrupt), ``stop``
   (end the kernel and the job), ``end`` (the kernel was asked to shut down: its end is the job's), ``start``
   followed by a line with the key (a new kernel in the same job: a restart in place, the old kernel ended first);
5. keeps the window: a kernel that has had no ``ping`` for ``grace`` seconds *and* used no CPU meanwhile (idle and
   disconnected) is ended, so nothing burns unseen; a kernel that ended on its own (a restart, a crash) leaves
   the job *parked* for ``park`` seconds, waiting for ``start``;
6. removes the private directory and reports how it ended; the job ends with it.

Every line it prints for rik starts with ``RIK-``. The whole script is one function definition followed by a
call, so the shell has read all of it before anything runs (and cannot mistake control words for script).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["IPC_PORTS", "STARTER", "Bootstrap", "render"]

#: Port numbers for ``ipc``: with the ipc transport they are only suffixes of the socket paths (``k-1``…), and
#: the directory is private, so they can never collide.
IPC_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")

#: Typed into an interactive job shell (any shell: sh, bash, zsh, csh) to turn the terminal's echo off and hand
#: over to a non-interactive ``sh`` reading the bootstrap. ``RIK-START`` followed by a number is printed only by
#: the new shell, so the echo of this very line never matches. ``unset HISTFILE`` first: bash and zsh save their
#: history when they exec, and this line is rik's, not the user's (it holds nothing secret either way).
STARTER = "unset HISTFILE; stty -echo; exec /bin/sh -c 'echo RIK-START$$; exec /bin/sh -s 2>/dev/null'"


def _q(value: str) -> str:
    return shlex.quote(value)


@dataclass(frozen=True, kw_only=True)
class Bootstrap:
    """What the script needs. ``connection`` holds the key: the rendered script is a secret."""

    connection: Mapping[str, Any]
    kernel_argv: Sequence[str]
    mode: str = "ipc"  # ipc | tcp | direct (use connection_path as it is: the kernel runs on this machine)
    connection_path: str | None = None
    workdir: str | None = None  # explicit --workdir
    fallback_workdir: str | None = None  # the local working directory, used when it exists remotely
    precmd: str | None = None
    grace: float = 3600.0
    park: float = 60.0  # how long a job waits for a restart after its kernel ended on its own
    eof_ends: bool = False  # the end of input ends the kernel at once (no holder: nothing can reconnect)
    job_id_env: str | None = None
    login_shell: bool = True  # False: the kernel starts from a plain sh, in the environment it was given


def _kernel_command(spec: Bootstrap, connection_file: str) -> str:
    """The command line the login shell runs. ``$rik_d`` is expanded by the outer sh before it is passed."""
    words = [
        connection_file if w == "{connection_file}" else w.replace("{connection_file}", connection_file)
        for w in spec.kernel_argv
    ]
    cmd = "exec " + " ".join(_q(w) for w in words)
    if spec.precmd:
        cmd = f"{spec.precmd}\n{cmd}"
    return cmd


def render(spec: Bootstrap) -> str:
    """The script. It contains the key (in one ``printf`` line) unless ``mode`` is ``direct``."""
    conn = spec.connection
    key = str(conn.get("key", ""))
    scheme = str(conn.get("signature_scheme", "hmac-sha256"))
    kernel_name = str(conn.get("kernel_name", ""))
    job_var = spec.job_id_env or ""
    lines: list[str] = []
    add = lines.append
    add("rik_main() {")
    # Under a terminal, dash counts itself interactive when stdin and *stdout* are terminals: job control would
    # then stop the background control reader (SIGTTIN). No job control here, ever.
    add("set +m 2>/dev/null")
    add("exec 2>&1")
    add("umask 077")
    add("rik_base=${TMPDIR:-/tmp}")
    # Unix socket paths are limited to ~107 bytes; a long per-job TMPDIR falls back to /tmp.
    add("[ ${#rik_base} -gt 60 ] && rik_base=/tmp")
    add(
        'rik_d=$(mktemp -d "$rik_base/rik-XXXXXXXX" 2>/dev/null) || { rik_d=$rik_base/rik-$$-$(date +%s); mkdir -m 700 "$rik_d"; } || { echo "RIK-ERROR cannot create a private directory in $rik_base"; exit 1; }'
    )
    # mktemp -d makes it 0700; the fallback says so itself.
    # The host's name, asked once: every process a start forks slows down many kernels starting at once.
    add("rik_host=$(hostname)")
    # Who owns this directory; and a janitor: directories of earlier kernels on this host whose bootstrap was
    # killed outright (a scheduler ending a job sends SIGKILL, so no trap runs) are removed.
    add('echo "$$ $rik_host" > "$rik_d/owner"')
    add('for rik_o in "$rik_base"/rik-*/owner; do')
    add('  [ -f "$rik_o" ] && [ "${rik_o%/owner}" != "$rik_d" ] || continue')
    add('  read -r rik_op rik_oh < "$rik_o" 2>/dev/null || continue')
    add('  [ "$rik_oh" = "$rik_host" ] && ! kill -0 "$rik_op" 2>/dev/null && rm -rf "${rik_o%/owner}"')
    add("done")
    add("trap 'rm -rf \"$rik_d\"; exit 129' HUP")
    add("trap 'rm -rf \"$rik_d\"; exit 143' TERM")
    # When rik is gone its end of our output is too: a write then raises SIGPIPE, which must clean up as well.
    add("trap 'rm -rf \"$rik_d\"; exit 141' PIPE")
    job = f"${{{job_var}:-}}" if job_var else ""
    add(f'echo "RIK-NODE $rik_host {job} $rik_d"')
    # Working directory: --workdir, else the local one when it exists here, else home.
    if spec.workdir:
        add(
            f'cd {_q(spec.workdir)} 2>/dev/null || {{ printf \'RIK-ERROR working directory %s does not exist on %s\\n\' {_q(spec.workdir)} "$rik_host"; rm -rf "$rik_d"; exit 1; }}'
        )
    elif spec.fallback_workdir:
        add(f"cd {_q(spec.fallback_workdir)} 2>/dev/null || cd")
    else:
        add("cd")
    add('echo "RIK-WORKDIR $PWD"')
    # The connection file, with the builtin printf (no process, no argv).
    if spec.mode == "direct":
        add(f"rik_cf={_q(spec.connection_path or '')}")
    else:
        add('rik_cf="$rik_d/kernel.json"')
    add(f"rik_key={_q(key)}")
    # The kernel command, through the user's login shell (csh-family shells take -l only alone).
    add(f"rik_cmd={_q(_kernel_command(spec, '{{RIKCF}}'))}")
    # {{RIKCF}} -> the connection file, in the shell itself (no sed: one process less per start, and any path).
    add("rik_rest=$rik_cmd; rik_cmd=")
    add("while :; do case $rik_rest in")
    add("  *'{{RIKCF}}'*) rik_cmd=$rik_cmd${rik_rest%%'{{RIKCF}}'*}$rik_cf; rik_rest=${rik_rest#*'{{RIKCF}}'};;")
    add("  *) rik_cmd=$rik_cmd$rik_rest; break;;")
    add("esac; done")
    if spec.login_shell:
        add('rik_sh=${SHELL:-/bin/sh}; case $rik_sh in *csh) rik_login="";; *) rik_login=-l;; esac')
    else:
        add('rik_sh=/bin/sh; rik_login=""')
    # The control channel, read in the background from a copy of stdin (the script is already read).
    # rik_end PID: TERM, then KILL if it is still there after 3 s. Short sleeps, so none outlives the script.
    add("rik_end() {")
    add('  kill -TERM "$1" 2>/dev/null; rik_e=0')
    add(
        '  while kill -0 "$1" 2>/dev/null && [ $rik_e -lt 30 ]; do sleep 0.1 2>/dev/null || sleep 1; rik_e=$((rik_e + 1)); done'
    )
    add('  kill -KILL "$1" 2>/dev/null')
    add("}")
    # POSIX gives an asynchronous list /dev/null as stdin *before* its own redirections: keep a copy of the real
    # stdin on fd 3 first, in this shell.
    add("exec 3<&0")
    # The reader wakes the main loop when a restart's key (or a stop) comes: a parked job starts its next kernel at
    # once, not at its next look. The kernel in the foreground never sees the signal (it goes to this shell only).
    add("trap : USR1")
    add("rik_self=$$")
    add("(")
    add("  while IFS= read -r rik_w <&3; do")
    add('    rik_p=$(cat "$rik_d/pid" 2>/dev/null)')
    add("    case $rik_w in")
    add('      ping) : > "$rik_d/seen";;')
    add('      int) [ -n "$rik_p" ] && kill -INT "$rik_p" 2>/dev/null;;')
    add('      stop) : > "$rik_d/stop"; kill -USR1 $rik_self 2>/dev/null; [ -n "$rik_p" ] && rik_end "$rik_p";;')
    # The frontend asked the kernel to shut down: when it has, the job ends at once (no waiting for a restart).
    add('      end) : > "$rik_d/stop"; kill -USR1 $rik_self 2>/dev/null;;')
    # A restart in place: the key comes on the next line (read by the builtin, never an argument), the running
    # kernel (if any) is ended, and the main loop starts a new one with it.
    add(
        '      start) IFS= read -r rik_k <&3 && printf "%s\\n" "$rik_k" > "$rik_d/next.tmp" && mv -f "$rik_d/next.tmp" "$rik_d/next"; rik_k=; kill -USR1 $rik_self 2>/dev/null; [ -n "$rik_p" ] && [ ! -e "$rik_d/exited" ] && rik_end "$rik_p";;'
    )
    add("    esac")
    add("  done")
    if spec.eof_ends:
        add('  : > "$rik_d/stop"; rik_p=$(cat "$rik_d/pid" 2>/dev/null); [ -n "$rik_p" ] && rik_end "$rik_p"')
    add(") </dev/null >/dev/null 2>&1 &")
    add("rik_reader=$!")
    # The window: a kernel with no launcher connected (no ping) and no CPU used for `grace` seconds is ended; a
    # parked job (its kernel ended on its own) waits `park` seconds for a restart. Checked every 2 s.
    add("(")
    # Ended by the bootstrap: its pending sleep goes too (a trapped signal interrupts `wait`), nothing lingers.
    add("  rik_s=; trap 'kill $rik_s 2>/dev/null; exit 0' TERM")
    add("  rik_idle=0; rik_cpu=")
    add('  while [ -d "$rik_d" ]; do')
    add("    sleep 2 & rik_s=$!; wait $rik_s")
    add('    [ -d "$rik_d" ] || break')
    add('    if [ -e "$rik_d/seen" ]; then rm -f "$rik_d/seen"; rik_idle=0; continue; fi')
    add('    rik_p=$(cat "$rik_d/pid" 2>/dev/null); rik_now=')
    add('    if [ -n "$rik_p" ] && read -r rik_st < "/proc/$rik_p/stat" 2>/dev/null; then')
    add('      set -- ${rik_st##*) }; rik_now="${12:-0} ${13:-0}"')
    add("    fi")
    add('    if [ -n "$rik_now" ] && [ "$rik_now" != "$rik_cpu" ]; then rik_cpu=$rik_now; rik_idle=0; continue; fi')
    add("    rik_idle=$((rik_idle + 2))")
    add(
        f'    if [ -e "$rik_d/exited" ]; then rik_lim={int(max(spec.park, 4))}; else rik_lim={int(max(spec.grace, 6))}; fi'
    )
    add(
        '    if [ $rik_idle -ge $rik_lim ]; then : > "$rik_d/expired"; : > "$rik_d/stop"; [ -n "$rik_p" ] && rik_end "$rik_p"; break; fi'
    )
    add("  done")
    add(") </dev/null >/dev/null 2>&1 3<&- &")
    add("rik_watchdog=$!")
    add("rik_try=0")
    add("while :; do")
    add("  rik_try=$((rik_try + 1))")
    if spec.mode == "tcp":
        # Ports picked here, just before the kernel starts, among those nobody listens on.
        add("  rik_ports=")
        add("  for rik_i in 1 2 3 4 5; do")
        add("    while :; do")
        add("      rik_n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' '); rik_n=$((rik_n % 30000 + 30000))")
        add("      rik_h=$(printf ':%04X ' \"$rik_n\")")
        add('      case " $rik_ports " in *" $rik_n "*) continue;; esac')
        add('      cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q "$rik_h" || break')
        add("    done")
        add('    rik_ports="$rik_ports $rik_n"')
        add("  done")
        add("  set -- $rik_ports")
        add(
            '  printf \'{"transport":"tcp","ip":"127.0.0.1","shell_port":%s,"iopub_port":%s,'
            '"stdin_port":%s,"control_port":%s,"hb_port":%s,"key":"%s","signature_scheme":"%s",'
            '"kernel_name":"%s"}\\n\' '
            + f'"$1" "$2" "$3" "$4" "$5" "$rik_key" {_q(scheme)} {_q(kernel_name)} > "$rik_cf"'
        )
    if spec.mode == "ipc":
        ports = ",".join(f'"{name}":{IPC_PORTS[name]}' for name in CHANNELS)
        add(
            '  printf \'{"transport":"ipc","ip":"%s/k",'
            + ports.replace("%", "%%")
            + ',"key":"%s","signature_scheme":"%s","kernel_name":"%s"}\\n\' '
            + f'"$rik_d" "$rik_key" {_q(scheme)} {_q(kernel_name)} > "$rik_cf"'
        )
    # An earlier kernel's sockets (a restart in place) must not pass for the new kernel's.
    add('  rm -f "$rik_d/pid" "$rik_d/ready" "$rik_d"/k-[0-9]')
    # Ready watcher: the kernel has bound its endpoints; then the connection file goes. It looks every 50 ms for
    # the first second, every 0.1 s for the next three, then every 0.25 s (rik_t counts 50 ms steps, up to 60 s):
    # a kernel usually is up within the first second, and 16 kernels starting at once on a small node otherwise
    # fork a thousand `sleep`s each minute between them.
    add("  (")
    add("    rik_t=0")
    add("    while [ $rik_t -lt 1200 ]; do")
    if spec.mode == "ipc":
        add(
            '      [ -S "$rik_d/k-1" ] && [ -S "$rik_d/k-2" ] && [ -S "$rik_d/k-3" ] && [ -S "$rik_d/k-4" ] && [ -S "$rik_d/k-5" ] && break'
        )
    elif spec.mode == "tcp":
        add("      rik_ok=1")
        add("      for rik_n in $rik_ports; do")
        add("        rik_h=$(printf ':%04X 00000000:0000 0A' \"$rik_n\")")
        add('        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q "$rik_h" || rik_ok=0')
        add("      done")
        add("      [ -r /proc/net/tcp ] || { [ $rik_t -ge 40 ] && break; }")
        add("      [ $rik_ok = 1 ] && break")
    else:
        add('      [ -s "$rik_d/pid" ] && break')
    add(
        "      if [ $rik_t -lt 20 ]; then rik_z=1 rik_zs=0.05; elif [ $rik_t -lt 80 ]; then rik_z=2 rik_zs=0.1; else rik_z=5 rik_zs=0.25; fi"
    )
    add("      sleep $rik_zs 2>/dev/null || sleep 1")
    add("      rik_t=$((rik_t + rik_z))")
    add("    done")
    if spec.mode != "direct":
        add('    rm -f "$rik_cf"')
    add('    : > "$rik_d/ready"')
    add('    echo "RIK-PID $(cat "$rik_d/pid" 2>/dev/null)"')
    if spec.mode == "ipc":
        add('    echo "RIK-READY ipc $rik_d/k"')
    elif spec.mode == "tcp":
        add('    echo "RIK-READY tcp $rik_ports"')
    else:
        add('    echo "RIK-READY direct"')
    add("  ) 3<&- &")
    add("  rik_watch=$!")
    # The kernel runs in the foreground so that it keeps the default SIGINT disposition (asynchronous commands
    # of a non-interactive shell ignore SIGINT, and a kernel could never be interrupted again).
    add(
        '  /bin/sh -c \'echo $$ > "$1/pid"; shift; exec "$@"\' rik "$rik_d" "$rik_sh" $rik_login -c "$rik_cmd" </dev/null 3<&-'
    )
    add("  rik_rc=$?")
    add("  kill $rik_watch 2>/dev/null")
    # A tcp kernel that died at once, before it was ready, probably met a port taken meanwhile: try again.
    add(
        f'  if [ {"1" if spec.mode == "tcp" else "0"} = 1 ] && [ ! -e "$rik_d/ready" ] && [ $rik_try -lt 3 ] && [ $rik_rc -ne 0 ]; then'
    )
    add('    echo "RIK-RETRY kernel exited with $rik_rc before it was ready"')
    add("    continue")
    add("  fi")
    # A new key waiting: a restart in place. Else a stop (or the window ran out) ends the job; else the kernel
    # ended on its own (a restart request, a crash): say so, and wait `park` seconds for a restart.
    add('  if [ ! -e "$rik_d/next" ] && [ ! -e "$rik_d/stop" ]; then')
    add('    echo "RIK-EXIT $rik_rc"')
    if spec.eof_ends:  # nothing can restart it in place: the kernel's end is the job's
        add("    break")
    add('    : > "$rik_d/exited"')
    # Woken by the reader's USR1 (a trapped signal ends `wait` at once); the short sleep is only a backstop.
    add('    while [ ! -e "$rik_d/next" ] && [ ! -e "$rik_d/stop" ]; do')
    add("      (sleep 0.2 2>/dev/null || sleep 1) & rik_z=$!; wait $rik_z; kill $rik_z 2>/dev/null")
    add("    done")
    add("  fi")
    add('  if [ -e "$rik_d/next" ] && [ ! -e "$rik_d/stop" ]; then')
    add('    IFS= read -r rik_key < "$rik_d/next"; rm -f "$rik_d/next" "$rik_d/exited"; rik_try=0')
    add('    echo "RIK-RESTART"')
    add("    continue")
    add("  fi")
    add("  break")
    add("done")
    add("kill $rik_reader $rik_watchdog 2>/dev/null")
    add('[ -e "$rik_d/expired" ] && echo "RIK-ERROR the kernel was idle and disconnected for its whole window; ended"')
    add('rm -rf "$rik_d"')
    add('echo "RIK-END $rik_rc"')
    add("exit $rik_rc")
    add("}")
    add("rik_main")
    return "\n".join(lines) + "\n"
