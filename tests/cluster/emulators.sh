#!/usr/bin/env bash
# rik's LSF emulator (a TEST FIXTURE, not a scheduler): install, spool, cluster.json section.
# (PBS is a real OpenPBS server: tests/cluster/pbs.sh.)
#
#   emulators.sh up      install tests/cluster/emulators/ into /opt/rik-emulators (copies), create the
#                        spool /var/spool/rik-emulators/lsf, merge "lsf" into cluster.json
#   emulators.sh down    end every emulated job's processes (by the pids recorded in the spool), clear
#                        the spool, remove /opt/rik-emulators
#
# Both are idempotent; `up` never disturbs jobs already in the spool.  tests/cluster/up and down call
# this script.  The programs are not on PATH: use /opt/rik-emulators/lsf/bin/bsub etc.
# See tests/cluster/emulators/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
require_root "$@"

SRC="$here/emulators"
DEST=/opt/rik-emulators
SPOOL_ROOT=/var/spool/rik-emulators
NODES_JSON='["rik-c1", "rik-c2"]'

install_programs() {
    local flavor prog
    local f
    # An older install may still hold the retired PBS emulator.
    rm -rf "$DEST/pbs" "$DEST/lib/rik_emu"
    install -d -m 0755 "$DEST" "$DEST/lib" "$DEST/lib/rik_emu" "$DEST/lsf/bin"
    install -m 0644 "$SRC/lib/rik_emulator.py" "$DEST/lib/rik_emulator.py"
    for f in "$SRC/lib/rik_emu/"*.py; do install -m 0644 "$f" "$DEST/lib/rik_emu/$(basename "$f")"; done
    install -m 0644 "$SRC/README.md" "$DEST/README.md"
    for prog in "$SRC/lsf/bin/"*; do
        install -m 0755 "$prog" "$DEST/lsf/bin/$(basename "$prog")"
    done
    # Compile once as root so every user starts fast (users cannot write __pycache__ here).
    /usr/bin/python3 -m compileall -q "$DEST/lib"
}

make_spool() {
    local flavor d
    install -d -m 0755 "$SPOOL_ROOT"
    for flavor in lsf; do
        d="$SPOOL_ROOT/$flavor"
        install -d -m 0755 "$d"
        # Job files are created by the submitting (unprivileged) user: sticky, world-writable.
        install -d -m 1777 "$d/jobs"
        [[ -e $d/lock ]] || : >"$d/lock"
        [[ -s $d/state.json ]] || printf '{"next_id": 100, "next_node": 0}\n' >"$d/state.json"
        chmod 0666 "$d/lock" "$d/state.json"
        chown root:root "$d/lock" "$d/state.json"
    done
}

merge_sections() {
    local lsf common
    common="\"emulated\": true, \"nodes\": $NODES_JSON, \"submit_host\": \"rik-front\",
        \"readme\": \"$DEST/README.md\", \"python\": \"/usr/bin/python3\""
    lsf="{ $common,
        \"flavor\": \"openlava/ibm\",
        \"bin_dir\": \"$DEST/lsf/bin\",
        \"bsub\": \"$DEST/lsf/bin/bsub\", \"bkill\": \"$DEST/lsf/bin/bkill\", \"bjobs\": \"$DEST/lsf/bin/bjobs\",
        \"default_queue\": \"normal\",
        \"queues\": {\"full\": \"never starts (until bkill)\", \"slow\": \"starts after 3 s\",
                     \"*\": \"starts at once\"},
        \"wait_queue_args\": [\"-q\", \"full\"], \"slow_queue_args\": [\"-q\", \"slow\"],
        \"first_job_id\": 100,
        \"job_env\": [\"LSB_JOBID\", \"LSB_JOBNAME\", \"LSB_DJOB_NUMPROC\", \"LSB_HOSTS\", \"LSB_QUEUE\"],
        \"host_request\": \"-m rik-c2\",
        \"exit_codes\": {\"bsub_command\": \"the command's\", \"bsub_killed_pending\": 246,
                         \"bkill_unknown\": 255, \"bjobs_unknown\": 255},
        \"spool\": \"$SPOOL_ROOT/lsf\" }"
    cluster_json_merge lsf "$lsf"
}

check() {
    # The programs answer as an unprivileged user on rik-front (no job submitted).
    local outp
    outp=$(on_host rik-front runuser -u rik -- "$DEST/lsf/bin/bjobs" -a 2>&1) || true
    [[ $outp == "No job found" || $outp == JOBID* ]] || die "bjobs emulator failed: $outp"
}

case "${1:-}" in
up)
    [[ -d $SRC/lib ]] || die "missing $SRC"
    install_programs
    make_spool
    if [[ -e $RIK_JSON ]]; then merge_sections; fi
    if [[ -e $(netns_path rik-front) ]]; then check; fi
    log "emulators: LSF (bsub/bkill/bjobs) in $DEST/lsf/bin; spool $SPOOL_ROOT"
    ;;
down)
    if [[ -f $DEST/lib/rik_emulator.py && -d $SPOOL_ROOT ]]; then
        RIK_EMU_SPOOL=$SPOOL_ROOT /usr/bin/python3 "$DEST/lib/rik_emulator.py" cleanup || log "emulators: cleanup reported an error"
    elif [[ -d $SPOOL_ROOT ]]; then
        RIK_EMU_SPOOL=$SPOOL_ROOT /usr/bin/python3 "$SRC/lib/rik_emulator.py" cleanup || log "emulators: cleanup reported an error"
    fi
    rm -rf "$SPOOL_ROOT" "$DEST"
    log "emulators: down (spool cleared, $DEST removed)"
    ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
