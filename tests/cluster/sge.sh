#!/usr/bin/env bash
# Grid Engine 8.1.9 (Debian's gridengine-*) for rik's test cluster (as root, after hosts.sh up).
#
#   sge.sh up      sge_qmaster on rik-front, sge_execd on rik-c1 and rik-c2; queues all.q and tiny.q,
#                  PE smp; waits until a job runs.  Idempotent: running + unchanged = only re-checked.
#   sge.sh down    delete jobs, stop the daemons (pid files), end leftover shepherds of our hosts.
#   sge.sh check   run the checks of `up` again.
#
# Debian layout: SGE_ROOT=/var/lib/gridengine, cell "default", every command is a wrapper that sources
# /etc/default/gridengine, so clients (as the test users on rik-front, over ssh) need no environment.
# The cell's state (spool DB, qmaster and execd spools) is re-created at each (re)start: each `up` gives
# the same configuration, whatever a test or an older run changed.  No init script is used.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
require_root "$@"

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON="$SGE_ROOT/$SGE_CELL/common"
SPOOL=/var/spool/gridengine
MASTER=rik-front
EXECS=(rik-c1 rik-c2)
D="$RIK_STATE/sge"     # qconf input files, our pid files, the configuration checksum
ADMIN=sgeadmin
FD_LIMIT=1024          # open-file limit of the daemons and so of the jobs (see start_execd)

ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(ms)
# RIK_CLUSTER_TRACE=1: time stamps of the bring-up steps on stderr.
trace() { [[ ${RIK_CLUSTER_TRACE:-0} != 1 ]] || log "sge +$(($(ms) - T0))ms $*"; }
ns_inode() { stat -L -c %i "$1"; }
on_front() { on_host "$MASTER" "$@"; }

# PID in FILE if alive, inside host NAME's network namespace, and running program PROG.
daemon_pid() {
    local file=$1 name=$2 prog=$3 pid
    pid=$(pid_of_file "$file") || return 1
    [[ "$(ns_inode "/proc/$pid/ns/net" 2>/dev/null)" == "$(ns_inode "$(netns_path "$name")")" ]] || return 1
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */$prog ]] || return 1
    printf '%s\n' "$pid"
}

# ------------------------------------------------------------------ configuration (qconf input)
queue_text() {
    local name=$1 hosts=$2 slots=$3 pes=$4 complexes=$5
    cat <<EOF
qname                 $name
hostlist              $hosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               $pes
rerun                 FALSE
slots                 $slots
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        $complexes
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
}

pe_text() {
    cat <<EOF
pe_name            smp
slots              8
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
}

exechost_text() {
    cat <<EOF
hostname              $1
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
}

# Edits applied to the global configuration and the scheduler configuration the cell starts with.
GLOBAL_SED=(
    # Debian forbids jobs of uid/gid < 1000; the test users are ordinary, but root checks must work too.
    -e 's/^min_uid .*/min_uid                      0/'
    -e 's/^min_gid .*/min_gid                      0/'
    # qlogin/qrsh without ssh/rsh: the builtin method ("Establishing builtin session to host X ...").
    -e 's/^qlogin_command .*/qlogin_command               builtin/'
    -e 's/^qlogin_daemon .*/qlogin_daemon                builtin/'
    -e 's/^rlogin_command .*/rlogin_command               builtin/'
    -e 's/^rlogin_daemon .*/rlogin_daemon                builtin/'
    -e 's/^rsh_command .*/rsh_command                  builtin/'
    -e 's/^rsh_daemon .*/rsh_daemon                   builtin/'
    # Load reports every 10 s instead of 40 s (qhost/qstat show a live host sooner).
    -e 's/^load_report_time .*/load_report_time             00:00:10/'
)
SCHED_SED=(
    # Schedule every second and right after a submit / a job end: interactive jobs start at once.
    -e 's/^schedule_interval .*/schedule_interval                 0:0:1/'
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/'
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/'
)
# Requestable-only resource of tiny.q: FORCED = only jobs asking for it (-l tiny) may run there, so
# ordinary jobs never land in (and fill) tiny.q by chance.
TINY_COMPLEX="tiny                tiny       BOOL        ==    FORCED      NO         FALSE    0"

# Everything above; a change makes `up` rebuild the cell.
config_sum() {
    {
        queue_text all.q "rik-c1 rik-c2" 4 smp NONE
        queue_text tiny.q rik-c2 1 NONE tiny=TRUE
        pe_text
        printf '%s\n' "${GLOBAL_SED[@]}" "${SCHED_SED[@]}" "$TINY_COMPLEX" "${EXECS[@]}" "$MASTER"
    } | sha256sum | cut -d' ' -f1
}

# ------------------------------------------------------------------ the cell
reset_cell() {
    # Cell files the packages create when preseeded (debconf.txt); made here if they were not.
    install -d -m 0755 -o "$ADMIN" -g "$ADMIN" "$SGE_ROOT/$SGE_CELL" "$COMMON"
    [[ -s $COMMON/bootstrap ]] ||
        install -m 0644 -o "$ADMIN" -g "$ADMIN" /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
    # The master is the test host rik-front, whatever the package was told at install time.
    printf '%s\n' "$MASTER" >"$COMMON/act_qmaster"
    chown "$ADMIN:$ADMIN" "$COMMON/act_qmaster"
    chmod 0644 "$COMMON/act_qmaster"
    # The test hosts resolve to their own addresses (not 127.0.0.1) through /etc/hosts: no host_aliases.
    rm -f "$COMMON/host_aliases" "$COMMON/accounting"
    # Fresh spool: job ids from 1, no queue/host objects from older runs.
    local d
    for d in "$SPOOL/spooldb" "$SPOOL/qmaster" "$SPOOL/execd"; do
        install -d -m 0755 -o "$ADMIN" -g "$ADMIN" "$d"
        find "$d" -mindepth 1 -delete
    done
    install -d -m 0755 -o "$ADMIN" -g "$ADMIN" "$SPOOL/qmaster/job_scripts"
    # The Debian postinst's own initialisation (spool DB, global config, complexes, usersets, manager).
    runuser -u "$ADMIN" -- /usr/share/gridengine/scripts/init_cluster \
        "$SGE_ROOT" "$SGE_CELL" "$SPOOL/spooldb" "$ADMIN" >"$D/init_cluster.log" 2>&1 ||
        die "init_cluster failed; see $D/init_cluster.log"
}

start_qmaster() {
    rm -f "$SPOOL/qmaster/qmaster.pid"
    # The wrapper execs the real sge_qmaster, which daemonizes and writes its pid file.
    # (9 = our lock: a daemon must not inherit it.  For the fd limit see start_execd.)
    (ulimit -n "$FD_LIMIT" && on_front /usr/sbin/sge_qmaster 9>&-)
    local i pid=""
    for ((i = 0; i < 100; i++)); do
        pid=$(daemon_pid "$SPOOL/qmaster/qmaster.pid" "$MASTER" sge_qmaster) && break
        sleep 0.05
    done
    [[ -n $pid ]] || die "sge_qmaster did not start; see $SPOOL/qmaster/messages"
    echo "$pid" >"$D/sge_qmaster.pid"
    for ((i = 0; i < 100; i++)); do
        on_front qconf -sh >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "sge_qmaster does not answer qconf; see $SPOOL/qmaster/messages"
}

# A modifying qconf: its chatter ("root@rik-front added ...", on stderr) goes to $D/qconf.log.
qc() {
    echo "+ qconf $*" >>"$D/qconf.log"
    on_front qconf "$@" >>"$D/qconf.log" 2>&1 || { tail -n 5 "$D/qconf.log" >&2; die "qconf $* failed"; }
}

# What an execd needs before it starts: host lists, the global configuration, its exec host object.
configure_hosts() {
    local n
    : >"$D/qconf.log"
    # rik-front (the qmaster host) is an admin host already; the exec hosts must be too.
    qc -ah "$(IFS=,; echo "${EXECS[*]}")"
    # Users submit on rik-front; jobs may submit from the nodes too.
    qc -as "$MASTER,$(IFS=,; echo "${EXECS[*]}")"
    # qconf -Mconf takes the configuration's name from the FILE name: it must be "global".
    mkdir -p "$D/conf"
    on_front qconf -sconf global | sed "${GLOBAL_SED[@]}" >"$D/conf/global"
    qc -Mconf "$D/conf/global"
    for n in "${EXECS[@]}"; do
        exechost_text "$n" >"$D/exechost-$n"
        qc -Ae "$D/exechost-$n"
    done
}

# The rest, done while the execds go through their start-up sleeps.
configure_queues() {
    on_front qconf -ssconf | sed "${SCHED_SED[@]}" >"$D/sched"
    qc -Msconf "$D/sched"
    { on_front qconf -sc | grep -v '^#'; echo "$TINY_COMPLEX"; } >"$D/complexes"
    qc -Mc "$D/complexes"
    pe_text >"$D/pe-smp"
    qc -Ap "$D/pe-smp"
    queue_text all.q "rik-c1 rik-c2" 4 smp NONE >"$D/all.q"
    qc -Aq "$D/all.q"
    queue_text tiny.q rik-c2 1 NONE tiny=TRUE >"$D/tiny.q"
    qc -Aq "$D/tiny.q"
}

start_execd() {
    local n=$1
    rm -f "$SPOOL/execd/$n/execd.pid"
    # Grid Engine daemons close every descriptor up to the fd limit when they daemonize, and so does
    # the shepherd of every job: at this machine's limit (20000) that alone took 2 s per execd and
    # 1.5 s per job.  Jobs (kernels) need far fewer than 1024.
    (ulimit -n "$FD_LIMIT" && on_host "$n" /usr/sbin/sge_execd 9>&-)
}

wait_execd() {
    local n=$1 i pid=""
    for ((i = 0; i < 200; i++)); do
        pid=$(daemon_pid "$SPOOL/execd/$n/execd.pid" "$n" sge_execd) && break
        sleep 0.05
    done
    [[ -n $pid ]] || die "sge_execd on $n did not start; see $SPOOL/execd/$n/messages"
    echo "$pid" >"$D/sge_execd-$n.pid"
}

# Queue instances are usable once their execd reported: no state letters (u = unknown) left.
wait_queues() {
    local i out bad
    for ((i = 0; i < 300; i++)); do
        out=$(on_front qstat -f 2>/dev/null | awk '$1 ~ /@/ {print $1, ($6 == "" ? "ok" : $6)}') || true
        bad=$(grep -cv ' ok$' <<<"$out" || true)
        [[ $(wc -l <<<"$out") -eq 3 && $bad -eq 0 ]] && return 0
        sleep 0.1
    done
    die "Grid Engine queues not ready after 30 s: $(tr '\n' ' ' <<<"$out")"
}

check() {
    local out
    # As a test user on the submit host, like rik: a qrsh job (waits for a slot rather than failing).
    out=$(on_front runuser -u rik -- timeout 60 qrsh -now n hostname </dev/null 2>&1) || die "qrsh as rik failed: $out"
    [[ $out == rik-c1 || $out == rik-c2 ]] || die "qrsh hostname printed '$out'"
}

running() {
    local n
    daemon_pid "$D/sge_qmaster.pid" "$MASTER" sge_qmaster >/dev/null || return 1
    for n in "${EXECS[@]}"; do daemon_pid "$D/sge_execd-$n.pid" "$n" sge_execd >/dev/null || return 1; done
    [[ "$(cat "$D/config.sum" 2>/dev/null)" == "$(config_sum)" ]]
}

up() {
    local t0 n
    t0=$(ms)
    install -d -m 0755 "$D"
    if ! running; then
        stop_daemons
        trace stopped
        reset_cell
        trace "cell reset"
        start_qmaster
        trace "qmaster up"
        configure_hosts
        trace "hosts configured"
        # In parallel, and in parallel with the queue set-up: each execd sleeps ~2.5 s in its start-up
        # (SGE's own fixed waits).  The queue instances appear on them when the queues are added.
        for n in "${EXECS[@]}"; do start_execd "$n" & done
        configure_queues
        trace "queues configured"
        wait
        for n in "${EXECS[@]}"; do wait_execd "$n"; done
        trace "execds up"
        config_sum >"$D/config.sum"
    fi
    wait_queues
    trace "queues ready"
    check
    trace checked
    write_json
    log "sge up in $(($(ms) - t0))ms: sge_qmaster on $MASTER, sge_execd on ${EXECS[*]}"
}

write_json() {
    cluster_json_merge sge "$(
        SPOOL=$SPOOL D=$D python3 - <<'PY'
import json, os
e = os.environ
print(json.dumps({
    "version": "8.1.9",
    "submit_host": "rik-front",
    "qmaster": "rik-front",
    "exec_hosts": ["rik-c1", "rik-c2"],
    "sge_root": "/var/lib/gridengine",
    "sge_cell": "default",
    # The Debian wrappers in /usr/bin source /etc/default/gridengine: nothing to set on the client.
    "client_env": {},
    "queues": {
        "all.q": {"hosts": ["rik-c1", "rik-c2"], "slots": 4, "qtype": "BATCH INTERACTIVE", "pe_list": ["smp"]},
        "tiny.q": {"hosts": ["rik-c2"], "slots": 1, "qtype": "BATCH INTERACTIVE",
                   "forced_complex": "tiny", "request": ["-l", "tiny"]},
    },
    "pe": {"smp": {"slots": 8, "allocation_rule": "$pe_slots"}},
    "qlogin_method": "builtin",
    # tiny.q has one slot and takes only jobs that request -l tiny; one such job fills it.
    "fill_queue": {
        "queue": "tiny.q",
        "filler": ["qsub", "-terse", "-b", "y", "-l", "tiny", "-N", "rik-filler", "-o", "/dev/null", "-j", "y",
                   "sleep", "3600"],
        "waiter_args": ["-l", "tiny"],
        "undo": "qdel the filler's job id (qsub -terse prints it)",
    },
    "job_env": ["JOB_ID (qrsh with a command; not in a qlogin login shell)", "NSLOTS", "PE"],
    "cancel": "qdel ID  (a running qlogin exits 137 about 0.5 s later; a waiting one notices only 30-60 s later: "
              "'...could not be scheduled, try again later.', exit 1)",
    "state": "qstat -u USER",
    "logs": {"qmaster": f"{e['SPOOL']}/qmaster/messages", "execd": f"{e['SPOOL']}/execd/HOST/messages"},
    "pid_files": {"qmaster": f"{e['D']}/sge_qmaster.pid", "execd": f"{e['D']}/sge_execd-HOST.pid"},
}))
PY
    )"
}

# ------------------------------------------------------------------ down
# Shepherds (one per job) inside host NAME's network namespace, and everything below them: started by
# our execd, reparented or not.
job_pids() {
    python3 - "$(netns_path "$1")" <<'PY'
import os, sys
want = os.stat(sys.argv[1]).st_ino
parent, roots = {}, []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        if os.stat(f"/proc/{pid}/ns/net").st_ino == want and \
                os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "sge_shepherd":
            roots.append(int(pid))
    except (OSError, IndexError, ValueError):
        pass
found = set(roots)
changed = True
while changed:
    changed = False
    for pid, pp in parent.items():
        if pp in found and pid not in found:
            found.add(pid)
            changed = True
print("\n".join(map(str, sorted(found))))
PY
}

delete_all_jobs() {
    local i
    daemon_pid "$D/sge_qmaster.pid" "$MASTER" sge_qmaster >/dev/null || return 0
    [[ -n "$(on_front qstat -u '*' 2>/dev/null)" ]] || return 0
    on_front qdel -f -u '*' >/dev/null 2>&1 || true
    for ((i = 0; i < 50; i++)); do
        [[ -z "$(on_front qstat -u '*' 2>/dev/null)" ]] && return 0
        sleep 0.1
    done
}

# Stop the daemons whose pid files are given as NAME:PROG:FILE: SIGTERM to all at once (each takes
# 1-3 s to shut down cleanly), SIGKILL to those left after WAIT seconds, pid files removed.
stop_all() {
    local wait=$1 spec name prog file pid i
    local -a pids=()
    shift
    for spec in "$@"; do
        IFS=: read -r name prog file <<<"$spec"
        if [[ -e "$(netns_path "$name")" ]] && pid=$(daemon_pid "$file" "$name" "$prog"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$file"
    done
    for ((i = 0; i < wait * 10; i++)); do
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && continue 2; done
        return 0
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

stop_daemons() {
    local n pid
    local -a specs=()
    for n in "${EXECS[@]}"; do
        # Our copy of the pid, and the daemon's own pid file: one written by a run interrupted right
        # after the start is found too (it runs inside our host's namespace, so it is ours).
        specs+=("$n:sge_execd:$D/sge_execd-$n.pid" "$n:sge_execd:$SPOOL/execd/$n/execd.pid")
    done
    stop_all 5 "${specs[@]}"
    for n in "${EXECS[@]}"; do
        # Job shepherds (and their jobs) left behind: started by our execd.
        if [[ -e "$(netns_path "$n")" ]]; then
            for pid in $(job_pids "$n"); do kill -KILL "$pid" 2>/dev/null || true; done
        fi
    done
    stop_all 10 "$MASTER:sge_qmaster:$D/sge_qmaster.pid" "$MASTER:sge_qmaster:$SPOOL/qmaster/qmaster.pid"
}

down() {
    if [[ -e "$(netns_path "$MASTER")" ]]; then
        delete_all_jobs
        stop_daemons
    fi
    rm -rf "$D"
    cluster_json_merge sge null 2>/dev/null || true
    log "sge down"
}

# One run at a time: `up` of one caller and `down` of another must not interleave (both wipe and
# start daemons).  The lock lives outside the state dir, which `down` removes.
mkdir -p /run/lock
exec 9>"/run/lock/rik-testcluster-sge.lock"
flock -w 120 9 || die "another tests/cluster/sge.sh is still running"

case "${1:-}" in
up) up ;;
down) down ;;
check)
    wait_queues
    check
    log "sge checked"
    ;;
*) die "usage: $0 up|down|check" ;;
esac
