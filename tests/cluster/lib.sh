# shellcheck shell=bash
# Shared helpers for rik's test-cluster scripts (tests/cluster/*.sh, up, down).
#
# Source it:   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# What it gives you
#   $RIK_STATE             state directory (env RIK_CLUSTER_DIR, default /run/rik-testcluster)
#   $RIK_JSON              $RIK_STATE/cluster.json
#   $RIK_PY                /usr/bin/python3 (the remote kernels' interpreter; also runs the helpers)
#   RIK_HOSTS              array: rik-gw rik-front rik-c1 rik-c2
#   netns_path NAME        /run/netns/NAME          (network namespace, made by `ip netns add`)
#   uts_path NAME          $RIK_STATE/uts/NAME      (persistent UTS namespace: hostname = NAME)
#   on_host NAME CMD...    run CMD inside host NAME's network + UTS namespaces.  Unlike
#                          `ip netns exec` it does NOT remount /sys, so /sys/fs/cgroup stays visible
#                          (slurmd needs it).  It execs CMD in place (no extra process); a daemon
#                          started this way and that daemonizes keeps both namespaces.
#                          For a private mount namespace on top:  on_host NAME unshare --mount CMD...
#   cluster_json_merge SECTION JSON
#                          set top-level key SECTION of cluster.json to the JSON value (other keys kept;
#                          locked, written atomically).  Example:
#                            cluster_json_merge slurm '{"conf": "/etc/slurm/slurm.conf"}'
#   cluster_json_update OBJECT
#                          same for every top-level key of the JSON object OBJECT, in one go
#   pid_alive PID          exit 0 if PID is running (not a zombie)
#   pid_of_file FILE       print the pid in FILE if that process is alive (exit 1 otherwise)
#   stop_pidfile FILE [SECONDS]
#                          SIGTERM the pid in FILE, SIGKILL after SECONDS (default 5), remove FILE
#   tcp_ok NAME ADDR PORT  exit 0 if a TCP connect from host NAME (or "root") to ADDR:PORT succeeds (1 s)
#   wait_tcp NAME ADDR PORT [SECONDS]
#                          wait until tcp_ok, fail after SECONDS (default 10)
#   require_cluster_owner  die unless the hosts are free or belong to $RIK_STATE (see RIK_OWNER_FILE)
#   log MSG / die MSG      prefixed messages on stderr; die exits 1

RIK_STATE="${RIK_CLUSTER_DIR:-/run/rik-testcluster}"
RIK_JSON="$RIK_STATE/cluster.json"
# shellcheck disable=SC2034  # used by the scripts that source this file
RIK_HOSTS=(rik-gw rik-front rik-c1 rik-c2)
# Debian's interpreter, not whatever `python3` is first on PATH (a pyenv shim costs ~0.25 s a call).
RIK_PY=/usr/bin/python3
export RIK_CLUSTER_DIR="$RIK_STATE"

# The namespaces, the /etc blocks and the users are machine-wide, while RIK_CLUSTER_DIR only moves
# the state: one cluster per machine.  This file names the state directory of the cluster that
# has the hosts, so `down` with another RIK_CLUSTER_DIR cannot tear down someone else's cluster.
RIK_OWNER_FILE=/run/rik-testcluster.owner

log() { printf '[rik-cluster] %s\n' "$*" >&2; }
die() { printf '[rik-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ $EUID -eq 0 ]] || die "must be run as root (network namespaces, sshd, users): sudo $0 $*"
}

# Die if the hosts belong to a cluster with another state directory (that still exists).
require_cluster_owner() {
    local owner
    [[ -s $RIK_OWNER_FILE ]] || return 0
    owner=$(<"$RIK_OWNER_FILE")
    [[ $owner == "$RIK_STATE" || ! -e $owner/cluster.json ]] && return 0
    die "the test hosts belong to the cluster with state $owner, not $RIK_STATE: use RIK_CLUSTER_DIR=$owner"
}

netns_path() { printf '/run/netns/%s\n' "$1"; }
uts_path() { printf '%s/uts/%s\n' "$RIK_STATE" "$1"; }

on_host() {
    local name=$1
    shift
    [[ -e "$(netns_path "$name")" && -e "$(uts_path "$name")" ]] || die "host $name does not exist (run tests/cluster/up)"
    # nsenter joins the namespaces and execs CMD: no new mount namespace, /sys untouched.
    nsenter --net="$(netns_path "$name")" --uts="$(uts_path "$name")" -- "$@"
}

cluster_json_merge() {
    local section=$1 value=$2
    cluster_json_update "$("$RIK_PY" -c 'import json, sys; print(json.dumps({sys.argv[1]: json.loads(sys.argv[2])}))' "$section" "$value")"
}

cluster_json_update() {
    local object=$1
    mkdir -p "$RIK_STATE"
    # flock: several bring-up scripts may write their sections one after the other or concurrently.
    "$RIK_PY" - "$RIK_JSON" "$object" <<'PY'
import fcntl, json, os, sys
path, update = sys.argv[1], json.loads(sys.argv[2])
if not isinstance(update, dict):
    sys.exit("cluster_json_update: expected a JSON object")
with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        data = {}
    data.update(update)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
PY
}

# A zombie counts as dead: daemons are reparented to pid 1, which may reap them late.
pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pid_of_file() {
    local file=$1 pid
    [[ -s $file ]] || return 1
    read -r pid <"$file" || true
    pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

stop_pidfile() {
    local file=$1 wait=${2:-5} pid i
    if pid=$(pid_of_file "$file"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < wait * 20; i++)); do
            pid_alive "$pid" || break
            sleep 0.05
        done
        if pid_alive "$pid"; then
            log "pid $pid ($file) ignored SIGTERM for ${wait}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

# shellcheck disable=SC2016  # $0/$1 belong to the inner bash
tcp_ok() {
    local name=$1 addr=$2 port=$3
    # bash's /dev/tcp: no extra tools; an unreachable route fails at once, the timeout covers drops.
    if [[ $name == root ]]; then
        timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$addr" "$port" 2>/dev/null
    else
        on_host "$name" timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$addr" "$port" 2>/dev/null
    fi
}

wait_tcp() {
    local name=$1 addr=$2 port=$3 wait=${4:-10} i
    for ((i = 0; i < wait * 20; i++)); do
        tcp_ok "$name" "$addr" "$port" && return 0
        sleep 0.05
    done
    die "$addr:$port not reachable from $name after ${wait}s"
}
