#!/usr/bin/env bash
# rik's PBS and LSF emulators (TEST FIXTURES, not schedulers): install, spool, cluster.json sections.
#
#   emulators.sh up      install tests/cluster/emulators/ into /opt/rik-emulators (copies), create the
#                        spool /var/spool/rik-emulators/{pbs,lsf}, merge "pbs" and "lsf" into cluster.json
#   emulators.sh down    end every emulated job's processes (by the pids recorded in the spool), clear
#                        the spool, remove /opt/rik-emulators
#
# Both are idempotent; `up` never disturbs jobs already in the spool.  tests/cluster/up and down call
# this script.  The programs are NOT on PATH (Grid Engine owns qsub/qdel/qstat there): use
# /opt/rik-emulators/pbs/bin/qsub etc.  See tests/cluster/emulators/README.md.
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
    install -d -m 0755 "$DEST" "$DEST/lib" "$DEST/pbs/bin" "$DEST/lsf/bin"
    install -m 0644 "$SRC/lib/rik_emulator.py" "$DEST/lib/rik_emulator.py"
    install -m 0644 "$SRC/README.md" "$DEST/README.md"
    for flavor in pbs lsf; do
        for prog in "$SRC/$flavor/bin/"*; do
            install -m 0755 "$prog" "$DEST/$flavor/bin/$(basename "$prog")"
        done
    done
    # Compile once as root so every user starts fast (users cannot write __pycache__ here).
    /usr/bin/python3 -m py_compile "$DEST/lib/rik_emulator.py"
}

make_spool() {
    local flavor d
    install -d -m 0755 "$SPOOL_ROOT"
    for flavor in pbs lsf; do
        d="$SPOOL_ROOT/$flavor"
        install -d -m 0755 "$d"
        # Job files are created by the submitting (unprivileged) user: sticky, world-writable.
        install -d -m 1777 "$d/jobs"
        if [[ $flavor == pbs ]]; then install -d -m 1777 "$d/aux"; fi
        [[ -e $d/lock ]] || : >"$d/lock"
        [[ -s $d/state.json ]] || printf '{"next_id": 100, "next_node": 0}\n' >"$d/state.json"
        chmod 0666 "$d/lock" "$d/state.json"
        chown root:root "$d/lock" "$d/state.json"
    done
}

merge_sections() {
    local pbs lsf common
    common="\"emulated\": true, \"nodes\": $NODES_JSON, \"submit_host\": \"rik-front\",
        \"readme\": \"$DEST/README.md\", \"python\": \"/usr/bin/python3\""
    pbs="{ $common,
        \"flavor\": \"torque\",
        \"bin_dir\": \"$DEST/pbs/bin\",
        \"qsub\": \"$DEST/pbs/bin/qsub\", \"qdel\": \"$DEST/pbs/bin/qdel\", \"qstat\": \"$DEST/pbs/bin/qstat\",
        \"server\": \"rik-front\", \"default_queue\": \"batch\",
        \"queues\": {\"full\": \"never starts (until qdel)\", \"slow\": \"starts after 3 s\",
                     \"*\": \"starts at once\"},
        \"wait_queue_args\": [\"-q\", \"full\"], \"slow_queue_args\": [\"-q\", \"slow\"],
        \"job_id_format\": \"N.rik-front\", \"first_job_id\": 100,
        \"job_env\": [\"PBS_JOBID\", \"PBS_JOBNAME\", \"PBS_O_WORKDIR\", \"PBS_NODEFILE\", \"PBS_NUM_PPN\", \"NCPUS\"],
        \"host_request\": \"-l host=rik-c2 or -l nodes=rik-c2[:ppn=N]\",
        \"exit_codes\": {\"qsub_completed\": 0, \"qsub_deleted_while_queued\": 1,
                         \"qdel_unknown\": 153, \"qstat_unknown\": 153},
        \"spool\": \"$SPOOL_ROOT/pbs\" }"
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
    cluster_json_update "$(python3 -c 'import json, sys; print(json.dumps({"pbs": json.loads(sys.argv[1]), "lsf": json.loads(sys.argv[2])}))' "$pbs" "$lsf")"
}

check() {
    # The programs answer as an unprivileged user on rik-front (no job submitted).
    local outp
    outp=$(on_host rik-front runuser -u rik -- "$DEST/pbs/bin/qstat" 2>&1) || die "qstat emulator failed: $outp"
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
    log "emulators: PBS (qsub/qdel/qstat) in $DEST/pbs/bin, LSF (bsub/bkill/bjobs) in $DEST/lsf/bin; spool $SPOOL_ROOT"
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
