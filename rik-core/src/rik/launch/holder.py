"""The holder: what keeps a kernel's job alive between connections, with nothing of rik installed remotely.

A connection to a kernel is one ``/bin/sh -s`` session on the submit host (the kernel's own host for plain SSH)
that reads the script rendered here on its standard input. The first connection *makes* the holder:

- a private directory (0700) with a fifo ``in`` and a file ``out``;
- a background shell, detached from the session (its standard streams are not the session's, ``HUP`` ignored),
  that runs the job's client (``srun … /bin/sh -s``, ``qrsh …``; the bootstrap's own ``/bin/sh -s`` for SSH) with
  its input from ``in`` and its output appended to ``out``. It keeps ``in`` open for writing itself, so the
  client never sees the end of its input when a connection goes; clients that need a terminal (``qlogin``,
  ``qsub -I``, ``bsub -Is``) get one from ``script`` (util-linux), with echo off.

Every connection (the first one too) then *attaches*: it says ``RIK-ATTACHED``, copies ``out`` from a byte
offset to the session (``tail -f``) and the session's input to ``in`` (``cat``). When the connection is lost
(laptop asleep, network changed, a gateway restarted) only the attached ``cat`` and ``tail`` end; the client, the
job and the kernel carry on, and the next connection attaches where the last one left off. When the client
ends, the holder writes ``RIK-HELD-EXIT status`` and removes its directory.

What goes into ``in`` (the bootstrap, control words, a restart's key) is never on a command line and never
stored: a fifo only passes it on.
"""

from __future__ import annotations

import shlex

__all__ = ["render_attach", "render_make"]


def _q(value: str) -> str:
    return shlex.quote(value)


def client_command(argv: tuple[str, ...] | list[str], *, tty: bool) -> str:
    """The shell command the holder runs for the job's client; under ``script`` when it needs a terminal."""
    command = shlex.join(argv)
    if not tty:
        return f"exec {command}"  # the holder's $! is then the client itself, which it may have to end
    inner = shlex.join(["/bin/sh", "-c", f"stty -echo 2>/dev/null; exec {command}"])
    return f"exec script -qfec {_q(inner)} /dev/null"


#: The most a first connection carries for the job's input itself (see :func:`render_make`): well under a fifo's
#: capacity, so that writing it never waits for a job that does not read yet.
PRELOAD_MAX = 32768


def carries(preload: str | None) -> bool:
    """Whether a first connection carries ``preload`` (see :func:`render_make`)."""
    return bool(preload) and len(str(preload).encode()) <= PRELOAD_MAX


def _attach_lines(offset: int, preload: str | None = None) -> list[str]:
    lines = [
        '[ -p "$rik_h/in" ] || { echo "RIK-GONE"; exit 3; }',
        # Read-write: opening never blocks, whether or not the holder is still reading.
        'exec 5<>"$rik_h/in"',
        'echo $$ > "$rik_h/attached"',
    ]
    if preload:
        # The shell's builtin printf: what it writes is never a command line, and the fifo stores nothing.
        lines.append(f"printf '%s' {_q(preload)} >&5")
    return [
        *lines,
        'echo "RIK-ATTACHED"',
        f'tail -c +{int(offset) + 1} -f "$rik_h/out" 2>/dev/null &',
        "rik_t=$!",
        "cat >&5",
        'kill "$rik_t" 2>/dev/null',
        # The job's command has ended (its bootstrap said RIK-END): nothing can be sent to it any more, so the
        # holder lets go of the job's input. A client that waits for the end of its input before it ends (qrsh
        # takes 0.8 s longer, and its job leaves the queue 1 s later) then ends at once.
        'if tail -n 20 "$rik_h/out" 2>/dev/null | grep -q "^RIK-END"; then',
        '  read -r rik_o rik_x < "$rik_h/owner" 2>/dev/null && kill -USR1 "$rik_o" 2>/dev/null',
        "fi",
        "exit 0",
    ]


def render_make(client: str, *, tty: bool, window: float | None = None, preload: str | None = None) -> str:
    """Make the holder for the shell command ``client`` (see :func:`client_command`), then attach to it.

    With ``preload`` (at most :data:`PRELOAD_MAX` bytes): the job's first input, written into the holder's fifo by
    this very script, ahead of anything the connection sends. The launcher would otherwise have to wait for
    ``RIK-ATTACHED`` before sending it, a round trip through the whole chain: the shell that reads this script
    (``/bin/sh -s``) may read ahead, and whatever follows the script in its input could be taken for more script.

    With ``window``: a job that has not started its kernel yet (still queued) and that no connection has been
    attached to for that many seconds is given up: its client is ended (which withdraws the job from the queue
    for most schedulers; ``rik gc`` cancels what is left). Once the kernel runs, the bootstrap keeps the window.
    """
    lines = [
        "rik_hold() {",
        "umask 077",
        "rik_base=${TMPDIR:-/tmp}",
        "[ ${#rik_base} -gt 60 ] && rik_base=/tmp",
        'rik_h=$(mktemp -d "$rik_base/rik-h-XXXXXXXX" 2>/dev/null) || { rik_h=$rik_base/rik-h-$$-$(date +%s); mkdir -m 700 "$rik_h"; } || { echo "RIK-ERROR cannot create a private directory in $rik_base"; exit 1; }',
        'mkfifo "$rik_h/in" || { echo "RIK-ERROR cannot create a fifo in $rik_h"; rm -rf "$rik_h"; exit 1; }',
        ': > "$rik_h/out"',
    ]
    if tty:
        lines.append(
            'command -v script >/dev/null 2>&1 || { echo "RIK-ERROR $(hostname) has no script program (util-linux), '
            'which an interactive job needs"; rm -rf "$rik_h"; exit 1; }'
        )
    lines += [
        f"rik_client={_q(client)}",
        "(",
        "  trap '' HUP INT",
        # USR1: the job's command has ended; let go of its input (see the attach script).
        "  trap 'exec 4<&-' USR1",
        '  exec 4<>"$rik_h/in"',
        '  /bin/sh -c "$rik_client" <"$rik_h/in" >>"$rik_h/out" 2>&1 4<&- &',
        "  rik_c=$!",
        *_queue_window(window),
        # A trapped signal ends `wait` early: wait again while the client is there.
        '  while :; do wait "$rik_c"; rik_rc=$?; kill -0 "$rik_c" 2>/dev/null || break; done',
        "  kill $rik_w 2>/dev/null",
        '  echo "RIK-HELD-EXIT $rik_rc" >>"$rik_h/out"',
        "  exec 4<&-",
        # An attached `tail` keeps reading the (now unlinked) output it has open: the last lines still reach it.
        '  rm -rf "$rik_h"',
        ") </dev/null >/dev/null 2>&1 &",
        # The bootstraps' janitor removes rik-* directories whose owner is dead: the holder owns this one.
        'echo "$! $(hostname)" > "$rik_h/owner"',
        'echo "RIK-HOLD $rik_h $!"',
        *_attach_lines(0, preload if carries(preload) else None),
        "}",
        "rik_hold",
    ]
    return "\n".join(lines) + "\n"


def _queue_window(window: float | None) -> list[str]:
    """A background watch (``$rik_w``) that ends a still-queued client nobody is attached to for ``window`` s."""
    if not window:
        return ["  rik_w="]
    limit = int(max(window, 6))
    return [
        "  (",
        "    rik_i=0; rik_s=; trap 'kill $rik_s 2>/dev/null; exit 0' TERM",
        '    while kill -0 "$rik_c" 2>/dev/null; do',
        "      sleep 2 & rik_s=$!; wait $rik_s",
        '      grep -q "^RIK-NODE" "$rik_h/out" 2>/dev/null && exit 0',
        '      rik_a=$(cat "$rik_h/attached" 2>/dev/null)',
        '      if [ -n "$rik_a" ] && kill -0 "$rik_a" 2>/dev/null; then rik_i=0; else rik_i=$((rik_i + 2)); fi',
        f"      if [ $rik_i -ge {limit} ]; then",
        '        echo "RIK-ERROR the job did not start and nobody was connected for its window; withdrawn" >>"$rik_h/out"',
        '        kill -TERM "$rik_c" 2>/dev/null; sleep 3; kill -KILL "$rik_c" 2>/dev/null; exit 0',
        "      fi",
        "    done",
        "  ) </dev/null >/dev/null 2>&1 &",
        "  rik_w=$!",
    ]


def render_attach(hold_dir: str, offset: int) -> str:
    """Attach a new connection to the holder in ``hold_dir``, from byte ``offset`` of its output."""
    lines = ["rik_hold() {", f"rik_h={_q(hold_dir)}", *_attach_lines(offset), "}", "rik_hold"]
    return "\n".join(lines) + "\n"
