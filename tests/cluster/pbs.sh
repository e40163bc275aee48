#!/usr/bin/env bash
# OpenPBS 23.06 for rik's test cluster (as root, after tests/cluster/hosts.sh up): a real PBS server.
#
#   pbs.sh up      build OpenPBS from its release archive once per machine (kept by the archive's sha256),
#                  install it in /opt/pbs, then pbs_server + pbs_sched + pbs_comm (and their PostgreSQL
#                  data service) on rik-front, pbs_mom on rik-c1 and rik-c2; waits until a job runs.
#                  Idempotent: running + unchanged = only re-checked.
#   pbs.sh down    delete jobs, stop the daemons (pid files), end what the moms left, remove the state.
#   pbs.sh check   run the checks of `up` again.
#   pbs.sh build   only build and install (what `up` does first).
#
# The archive: $RIK_OPENPBS_SOURCE, else ../shared/vendor/openpbs/openpbs-*.tar.gz next to the repository.
# Without it `up` prints one line naming RIK_OPENPBS_SOURCE and leaves PBS out (the PBS tests skip);
# under CI=true that is an error.  /opt/pbs stays after `down`, like the Debian packages of the others.
#
# Clients (qsub/qstat/qdel as the test users on rik-front, over ssh) read /etc/pbs.conf, the server's;
# each mom has its own PBS_HOME and pbs.conf (PBS_CONF_FILE) in the state directory.  PBS's programs are
# NOT on PATH: Debian's Grid Engine owns /usr/bin/qsub; call /opt/pbs/bin/qsub.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
require_root "$@"

REPO=$(cd "$here/../.." && pwd)
PBS_EXEC=/opt/pbs
CACHE=/var/cache/rik-testcluster/openpbs # one built tree per archive checksum
D="$RIK_STATE/pbs"                       # PBS_HOMEs, pbs.conf of the moms, logs of this script
SERVER=rik-front
MOMS=(rik-c1 rik-c2)
ETC_CONF=/etc/pbs.conf
VERSION=23.06

ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(ms)
trace() { [[ ${RIK_CLUSTER_TRACE:-0} != 1 ]] || log "pbs +$(($(ms) - T0))ms $*"; }
ns_inode() { stat -L -c %i "$1"; }

# ------------------------------------------------------------------ the source archive
# Print the archive's path, or nothing.
find_archive() {
    if [[ -n ${RIK_OPENPBS_SOURCE:-} ]]; then
        [[ -f $RIK_OPENPBS_SOURCE ]] && printf '%s\n' "$RIK_OPENPBS_SOURCE"
        return 0
    fi
    local f
    for f in "$REPO"/../shared/vendor/openpbs/openpbs-*.tar.gz; do
        [[ -f $f ]] && { printf '%s\n' "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"; return 0; }
    done
    return 0
}

missing_archive() {
    local msg="OpenPBS source archive not found (looked for ${RIK_OPENPBS_SOURCE:-$REPO/../shared/vendor/openpbs/openpbs-*.tar.gz}): set RIK_OPENPBS_SOURCE=/path/to/openpbs-23.06.06.tar.gz; without it the PBS tests skip"
    if [[ ${CI:-} == true ]]; then die "$msg (CI=true: failing)"; fi
    printf '[rik-cluster] !!!!!!!! %s !!!!!!!!\n' "$msg" >&2
}

# ------------------------------------------------------------------ build once per archive
# $CACHE/SHA/root/opt/pbs is the installed tree (make install DESTDIR=...); $CACHE/SHA/done marks it whole.
build() {
    local archive=$1 sha=$2 dir src t0
    dir="$CACHE/$sha"
    [[ -e $dir/done ]] && return 0
    t0=$(ms)
    log "pbs: building OpenPBS from $archive (once per machine, about 2 minutes; log $dir/build.log)"
    rm -rf "$dir"
    install -d -m 0755 "$dir"
    tar -xzf "$archive" -C "$dir"
    src=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'openpbs-*' | head -n 1)
    [[ -n $src ]] || die "pbs: $archive holds no openpbs-* directory"
    # 23.06.06 includes <eval.h>, which Python 3.11 no longer has (upstream now includes <Python.h>).
    sed -i 's|#include <eval.h>|#include <Python.h>|' "$src/src/lib/Libpython/pbs_python_external.c"
    # A clean PATH and --with-python: configure links whatever python is first on PATH otherwise.
    (
        cd "$src"
        export PATH=/usr/sbin:/usr/bin:/sbin:/bin
        ./autogen.sh
        ./configure --prefix="$PBS_EXEC" --with-python=/usr
        make -j"$(nproc)"
        make install DESTDIR="$dir/root"
    ) >"$dir/build.log" 2>&1 || { tail -n 20 "$dir/build.log" >&2; die "pbs: building OpenPBS failed; see $dir/build.log"; }
    rm -rf "$src"
    [[ -x $dir/root$PBS_EXEC/sbin/pbs_server.bin ]] || die "pbs: the build installed no pbs_server.bin; see $dir/build.log"
    echo "$sha" >"$dir/done"
    # Trees built from other archives are of no more use.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$sha" -exec rm -rf {} +
    log "pbs: OpenPBS built in $((($(ms) - t0) / 1000))s"
}

# /opt/pbs from the built tree, unless it is that tree already.  Only /opt/pbs: the build's
# /etc/profile.d/pbs.sh (which would put /opt/pbs/bin on every login PATH) and systemd unit stay out.
install_tree() {
    local sha=$1 dir="$CACHE/$1"
    [[ "$(cat "$PBS_EXEC/.rik-openpbs-sha256" 2>/dev/null)" == "$sha" ]] && return 0
    # A PBS this script did not install is never replaced.
    [[ ! -e $PBS_EXEC || -e $PBS_EXEC/.rik-openpbs-sha256 ]] ||
        die "pbs: $PBS_EXEC exists and is not the test cluster's (no .rik-openpbs-sha256 in it): move it away first"
    running_any && die "pbs: $PBS_EXEC is to be replaced while PBS daemons run: tests/cluster/pbs.sh down first"
    rm -rf "$PBS_EXEC"
    cp -a "$dir/root$PBS_EXEC" "$PBS_EXEC"
    # The authentication helpers must be setuid root (make install does not do it).
    chmod 4755 "$PBS_EXEC/sbin/pbs_iff" "$PBS_EXEC/sbin/pbs_rcp"
    echo "$sha" >"$PBS_EXEC/.rik-openpbs-sha256"
    log "pbs: installed $PBS_EXEC (OpenPBS sha256 ${sha:0:12})"
}

# ------------------------------------------------------------------ configuration
# /etc/pbs.conf: the server host's configuration, and what every client (qsub, qstat, qdel, pbs_iff) reads.
server_conf_text() {
    cat <<EOF
# pbs.conf of rik's test cluster (generated by tests/cluster/pbs.sh; do not edit, rerun it).
PBS_EXEC=$PBS_EXEC
PBS_SERVER=$SERVER
PBS_HOME=$D/server
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM=0
PBS_CORE_LIMIT=0
PBS_SCP=/usr/bin/scp
EOF
}

# A mom's own pbs.conf (PBS_CONF_FILE), with its own PBS_HOME: the hosts share one file system.
mom_conf_text() {
    cat <<EOF
# pbs.conf of the pbs_mom on $1 (generated by tests/cluster/pbs.sh; do not edit, rerun it).
PBS_EXEC=$PBS_EXEC
PBS_SERVER=$SERVER
PBS_HOME=$D/$1
PBS_START_SERVER=0
PBS_START_SCHED=0
PBS_START_COMM=0
PBS_START_MOM=1
PBS_CORE_LIMIT=0
PBS_SCP=/usr/bin/scp
EOF
}

# mom_priv/config: accept the server's host; the hosts share /, so output files are copied with cp; look at
# the jobs' usage (and walltime) every 2-10 s instead of 10-120 s, so a job over its limit ends promptly.
mom_config_text() {
    cat <<EOF
\$clienthost $SERVER
\$restrict_user_maxsysid 999
\$usecp *:/ /
\$min_check_poll 2
\$max_check_poll 10
EOF
}

# qmgr commands run at each (re)start of the server.
QMGR=(
    # Jobs are submitted on rik-front and run on rik-c1/rik-c2 under the same (shared) accounts.
    "set server flatuid = true"
    # Schedule every 5 s as well as at each submit and job end.
    "set server scheduler_iteration = 5"
    "create node rik-c1"
    "create node rik-c2"
    # Like the SLURM nodes: 4 CPUs each on a 2-core machine, so that several one-CPU jobs fit at once.
    "set node rik-c1 resources_available.ncpus = 4"
    "set node rik-c2 resources_available.ncpus = 4"
)

config_sum() {
    {
        server_conf_text
        for n in "${MOMS[@]}"; do mom_conf_text "$n"; done
        mom_config_text
        printf '%s\n' "${QMGR[@]}"
    } | sha256sum | cut -d' ' -f1
}

write_conf() {
    install -d -m 0755 "$D" "$D/log"
    server_conf_text >"$D/pbs.conf"
    local n
    for n in "${MOMS[@]}"; do mom_conf_text "$n" >"$D/mom-$n.conf"; done
    chmod 0644 "$D"/*.conf
    # /etc/pbs.conf -> ours.  A real file that is not ours is kept aside, never overwritten.
    if [[ -e $ETC_CONF && ! -L $ETC_CONF ]]; then
        log "keeping the existing $ETC_CONF as $ETC_CONF.rik-saved"
        mv "$ETC_CONF" "$ETC_CONF.rik-saved"
    fi
    [[ "$(readlink "$ETC_CONF" 2>/dev/null)" == "$D/pbs.conf" ]] || ln -sfn "$D/pbs.conf" "$ETC_CONF"
}

# ------------------------------------------------------------------ daemons
# PID in FILE if alive, inside host NAME's network namespace, and running program PROG.
daemon_pid() {
    local file=$1 name=$2 prog=$3 pid
    [[ -e "$(netns_path "$name")" ]] || return 1
    pid=$(pid_of_file "$file") || return 1
    [[ "$(ns_inode "/proc/$pid/ns/net" 2>/dev/null)" == "$(ns_inode "$(netns_path "$name")")" ]] || return 1
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */$prog ]] || return 1
    printf '%s\n' "$pid"
}

# The daemons as NAME:PROG:PIDFILE: the pid files PBS writes itself (the data service's is PostgreSQL's).
daemon_specs() {
    local n
    printf '%s\n' "$SERVER:pbs_server.bin:$D/server/server_priv/server.lock" \
        "$SERVER:pbs_sched:$D/server/sched_priv/sched.lock" \
        "$SERVER:pbs_comm:$D/server/server_priv/comm.lock" \
        "$SERVER:postgres:$D/server/datastore/postmaster.pid"
    for n in "${MOMS[@]}"; do printf '%s\n' "$n:pbs_mom:$D/$n/mom_priv/mom.lock"; done
}

running() {
    local name prog file
    while IFS=: read -r name prog file; do
        daemon_pid "$file" "$name" "$prog" >/dev/null || return 1
    done < <(daemon_specs)
    [[ "$(cat "$D/config.sum" 2>/dev/null)" == "$(config_sum)" ]]
}

running_any() {
    local name prog file
    while IFS=: read -r name prog file; do
        daemon_pid "$file" "$name" "$prog" >/dev/null && return 0
    done < <(daemon_specs)
    return 1
}

# PBS's init script, run inside host NAME with the pbs.conf CONF: it creates PBS_HOME (on the server host
# with the PostgreSQL data store) when missing, then starts the daemons CONF names; they daemonize.
init_script() {
    local name=$1 conf=$2 verb=$3
    on_host "$name" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PBS_CONF_FILE="$conf" \
        "$PBS_EXEC/libexec/pbs_init.d" "$verb" 9>&-
}

start_server() {
    init_script "$SERVER" "$D/pbs.conf" start >"$D/log/server-start.log" 2>&1 ||
        { tail -n 20 "$D/log/server-start.log" >&2; die "pbs: the server did not start; see $D/log/server-start.log"; }
    local i
    for ((i = 0; i < 300; i++)); do
        on_host "$SERVER" "$PBS_EXEC/bin/qstat" -B >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "pbs: pbs_server does not answer qstat -B; see $D/server/server_logs"
}

configure_server() {
    local c
    : >"$D/log/qmgr.log"
    for c in "${QMGR[@]}"; do
        echo "+ qmgr -c '$c'" >>"$D/log/qmgr.log"
        on_host "$SERVER" "$PBS_EXEC/bin/qmgr" -c "$c" >>"$D/log/qmgr.log" 2>&1 ||
            { tail -n 5 "$D/log/qmgr.log" >&2; die "pbs: qmgr -c '$c' failed"; }
    done
}

start_mom() {
    local n=$1
    # PBS_HOME first (pbs_habitat, as the init script would), then our mom_priv/config, then the mom.
    on_host "$n" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PBS_CONF_FILE="$D/mom-$n.conf" \
        "$PBS_EXEC/libexec/pbs_habitat" >"$D/log/mom-$n-habitat.log" 2>&1 9>&- ||
        { tail -n 20 "$D/log/mom-$n-habitat.log" >&2; die "pbs: pbs_habitat for $n failed"; }
    mom_config_text >"$D/$n/mom_priv/config"
    chmod 0644 "$D/$n/mom_priv/config"
    init_script "$n" "$D/mom-$n.conf" start >"$D/log/mom-$n-start.log" 2>&1 ||
        { tail -n 20 "$D/log/mom-$n-start.log" >&2; die "pbs: pbs_mom on $n did not start; see $D/log/mom-$n-start.log"; }
}

wait_nodes_free() {
    local i out=""
    for ((i = 0; i < 300; i++)); do
        out=$(on_host "$SERVER" "$PBS_EXEC/bin/pbsnodes" -a -F dsv 2>/dev/null |
            awk -F'|' '{ m = s = ""; for (i = 1; i <= NF; i++) { if ($i ~ /^Mom=/) m = substr($i, 5);
                                 if ($i ~ /^state=/) s = substr($i, 7) } print m, s }' | sort | tr '\n' ' ') || true
        # Usable = up: free, or busy with a test's jobs (`up` on a running cluster).
        [[ $out =~ ^rik-c1\ (free|job-busy)\ rik-c2\ (free|job-busy)\ $ ]] && return 0
        sleep 0.1
    done
    die "pbs: the nodes are not up after 30 s: $out (see $D/server/server_logs, $D/rik-c1/mom_logs)"
}

check() {
    local out f
    # As a test user on the submit host, like rik: a job whose qsub waits for its end (-W block=true).
    f=$(mktemp /tmp/rik-pbs-check.XXXXXX)
    chmod 0666 "$f"
    out=$(on_host "$SERVER" runuser -u rik -- timeout 60 "$PBS_EXEC/bin/qsub" -W block=true -N rik-check \
        -o /dev/null -e /dev/null -- /bin/sh -c "hostname >$f" </dev/null 2>&1) ||
        { rm -f "$f"; die "pbs: qsub as rik failed: $out"; }
    out=$(cat "$f")
    rm -f "$f"
    [[ $out == rik-c1 || $out == rik-c2 ]] || die "pbs: the check job printed '$out'"
}

up() {
    local t0 archive sha n
    t0=$(ms)
    archive=$(find_archive)
    if [[ -z $archive ]]; then
        missing_archive
        cluster_json_merge pbs '{"missing": "its source archive was not found: set RIK_OPENPBS_SOURCE and rerun tests/cluster/up"}'
        return 0
    fi
    sha=$(sha256sum "$archive" | cut -d' ' -f1)
    build "$archive" "$sha"
    install_tree "$sha"
    trace installed
    if ! running; then
        stop_daemons
        trace stopped
        # Fresh PBS_HOMEs at every start: job ids from 0, no nodes or jobs of an older run.
        rm -rf "$D/server" "${MOMS[@]/#/$D/}"
        write_conf
        start_server
        trace "server up"
        configure_server
        trace "server configured"
        local -a starting=()
        for n in "${MOMS[@]}"; do
            start_mom "$n" &
            starting+=($!)
        done
        for n in "${starting[@]}"; do wait "$n" || die "pbs: a pbs_mom did not start (see above)"; done
        trace "moms started"
        config_sum >"$D/config.sum"
    fi
    wait_nodes_free
    trace "nodes free"
    check
    trace checked
    write_json "$sha" "$archive"
    log "pbs up in $(($(ms) - t0))ms: OpenPBS $VERSION server, scheduler, comm on $SERVER, pbs_mom on ${MOMS[*]}"
}

write_json() {
    cluster_json_merge pbs "$(
        SHA=$1 ARCHIVE=$2 D=$D PBS_EXEC=$PBS_EXEC python3 - <<'PY'
import json, os
e = os.environ
b = f"{e['PBS_EXEC']}/bin"
d = e["D"]
print(json.dumps({
    "emulated": False,
    "flavor": "openpbs",
    "version": "23.06.06",
    "source": e["ARCHIVE"],
    "source_sha256": e["SHA"],
    "submit_host": "rik-front",
    "server": "rik-front",
    "nodes": ["rik-c1", "rik-c2"],
    "ncpus_per_node": 4,
    "bin_dir": b,
    # Not on PATH (Grid Engine's qsub is /usr/bin/qsub): full paths.
    "qsub": f"{b}/qsub", "qdel": f"{b}/qdel", "qstat": f"{b}/qstat",
    "default_queue": "workq",
    "conf": "/etc/pbs.conf",
    "client_env": {},
    "job_id_format": "N.rik-front",
    "job_env": ["PBS_JOBID", "PBS_JOBNAME", "PBS_O_WORKDIR", "PBS_NODEFILE", "NCPUS"],
    # A batch job holding every CPU of rik-c2; a job asking for rik-c2 then waits ("qsub: waiting for job").
    "fill_node": {
        "node": "rik-c2",
        "filler": [f"{b}/qsub", "-N", "rik-filler", "-o", "/dev/null", "-e", "/dev/null",
                   "-l", "select=1:ncpus=4:host=rik-c2", "--", "/bin/sleep", "3600"],
        "waiter_args": ["-l", "select=1:host=rik-c2"],
        "undo": "qdel the filler's job id (qsub prints it)",
    },
    # More CPUs than any node has: the job stays queued ("Can Never Run") until deleted.
    "never_starts_args": ["-l", "select=1:ncpus=64"],
    "cancel": "qdel ID  (a running qsub -I ends within seconds; a waiting one notices up to 30 s later: "
              "'qsub: job ID apparently deleted', exit 1)",
    "state": "qstat ID  (after the job ended: 'qstat: Unknown Job Id ID', exit 153)",
    "logs": {"server": f"{d}/server/server_logs", "sched": f"{d}/server/sched_logs",
             "mom": f"{d}/HOST/mom_logs", "bring_up": f"{d}/log"},
    "pid_files": {"server": f"{d}/server/server_priv/server.lock", "sched": f"{d}/server/sched_priv/sched.lock",
                  "comm": f"{d}/server/server_priv/comm.lock", "data_service": f"{d}/server/datastore/postmaster.pid",
                  "mom": f"{d}/HOST/mom_priv/mom.lock"},
}))
PY
    )"
}

# ------------------------------------------------------------------ down
delete_all_jobs() {
    local i ids
    daemon_pid "$D/server/server_priv/server.lock" "$SERVER" pbs_server.bin >/dev/null || return 0
    ids=$(on_host "$SERVER" "$PBS_EXEC/bin/qselect" 2>/dev/null | tr '\n' ' ') || true
    [[ -n ${ids// /} ]] || return 0
    # shellcheck disable=SC2086  # a list of job ids
    on_host "$SERVER" "$PBS_EXEC/bin/qdel" -W force $ids >/dev/null 2>&1 || true
    for ((i = 0; i < 50; i++)); do
        [[ -z "$(on_host "$SERVER" "$PBS_EXEC/bin/qselect" 2>/dev/null)" ]] && return 0
        sleep 0.1
    done
}

# Job processes left inside host NAME's network namespace: those whose environment names a PBS job.
job_pids() {
    python3 - "$(netns_path "$1")" <<'PY'
import os, sys
want = os.stat(sys.argv[1]).st_ino
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino != want:
            continue
        with open(f"/proc/{pid}/environ", "rb") as f:
            if any(v.startswith(b"PBS_JOBID=") for v in f.read().split(b"\0")):
                found.append(pid)
    except OSError:
        pass
print("\n".join(found))
PY
}

# Stop NAME:PROG:FILE daemons: SIGTERM to all at once, SIGKILL to those left after WAIT seconds.
stop_all() {
    local wait=$1 spec name prog file pid i
    local -a pids=()
    shift
    for spec in "$@"; do
        IFS=: read -r name prog file <<<"$spec"
        if pid=$(daemon_pid "$file" "$name" "$prog"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for ((i = 0; i < wait * 10; i++)); do
        for pid in "${pids[@]}"; do pid_alive "$pid" && { sleep 0.1; continue 2; }; done
        return 0
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

stop_daemons() {
    local n pid
    local -a moms=()
    for n in "${MOMS[@]}"; do moms+=("$n:pbs_mom:$D/$n/mom_priv/mom.lock"); done
    stop_all 10 "${moms[@]}"
    for n in "${MOMS[@]}"; do
        if [[ -e "$(netns_path "$n")" ]]; then
            for pid in $(job_pids "$n"); do kill -KILL "$pid" 2>/dev/null || true; done
        fi
    done
    stop_all 10 "$SERVER:pbs_sched:$D/server/sched_priv/sched.lock" \
        "$SERVER:pbs_server.bin:$D/server/server_priv/server.lock"
    stop_all 10 "$SERVER:pbs_comm:$D/server/server_priv/comm.lock"
    # The data service: PostgreSQL, started as its own user by the server's start-up.
    stop_all 15 "$SERVER:postgres:$D/server/datastore/postmaster.pid"
}

down() {
    delete_all_jobs
    stop_daemons
    [[ "$(readlink "$ETC_CONF" 2>/dev/null)" == "$D/pbs.conf" ]] && rm -f "$ETC_CONF"
    rm -rf "$D"
    cluster_json_merge pbs null 2>/dev/null || true
    log "pbs down"
}

# One run at a time: `up` of one caller and `down` of another must not interleave.  The lock lives outside
# the state dir, which `down` removes.
mkdir -p /run/lock
exec 9>"/run/lock/rik-testcluster-pbs.lock"
flock -w 600 9 || die "another tests/cluster/pbs.sh is still running"

case "${1:-}" in
up) up ;;
down) down ;;
check)
    wait_nodes_free
    check
    log "pbs checked"
    ;;
build)
    archive=$(find_archive)
    [[ -n $archive ]] || { missing_archive; exit 1; }
    sha=$(sha256sum "$archive" | cut -d' ' -f1)
    build "$archive" "$sha"
    install_tree "$sha"
    ;;
*) die "usage: $0 up|down|check|build" ;;
esac
