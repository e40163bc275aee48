#!/usr/bin/env bash
# rik's test hosts: four network namespaces, each with its own hostname and its own real OpenSSH sshd.
#
#   hosts.sh up                  create/repair everything, start sshds, verify reachability and logins
#   hosts.sh down                stop the sshds (by pid file), end what is left in the namespaces, delete them
#   hosts.sh reload NAME         SIGHUP NAME's sshd after editing $RIK_STATE/sshd/NAME.extra.conf
#   hosts.sh restart-sshd NAME   stop NAME's listening sshd (pid file) and start it again; sessions survive
#   hosts.sh check               re-run the reachability and login checks only
#
#        root ns 10.200.1.1 (rikv-gw)
#            |  10.200.1.0/24
#        rik-gw   eth0 10.200.1.2 | eth1 10.200.2.1
#            |  10.200.2.0/24
#        rik-front eth0 10.200.2.2 | br0 10.200.3.1
#            |  10.200.3.0/24 (bridge br0 inside rik-front)
#        rik-c1 eth0 10.200.3.11      rik-c2 eth0 10.200.3.12
#
# No ip_forward anywhere: each host reaches only its neighbours, so a launcher must really chain
# ssh hops (root -> rik-gw -> rik-front -> rik-c1).  See README.md next to this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
require_root "$@"
require_cluster_owner

# ------------------------------------------------------------------ layout (others code against it)
declare -A ADDR=([rik-gw]=10.200.1.2 [rik-front]=10.200.2.2 [rik-c1]=10.200.3.11 [rik-c2]=10.200.3.12)
# Every address of a host; its sshd listens on all of them (and nothing else).
declare -A LISTEN=([rik-gw]="10.200.1.2 10.200.2.1" [rik-front]="10.200.2.2 10.200.3.1"
    [rik-c1]="10.200.3.11" [rik-c2]="10.200.3.12")
ROOT_VETH=rikv-gw
USERS=(rik rikpp rikpw rik2)
KEY_USERS=(rik rikpp rik2)        # client keys in $RIK_STATE/keys
CLUSTER_USERS=(rik rik2)          # also get ~/.ssh/id_ed25519 for ssh between cluster hosts
PASSPHRASE_rikpp=rik-passphrase
PASSWORD_rikpw=rik-password
MARK_BEGIN="# >>> rik test cluster (tests/cluster/hosts.sh) >>>"
MARK_END="# <<< rik test cluster <<<"

SSHD_DIR="$RIK_STATE/sshd"
KEY_DIR="$RIK_STATE/keys"
KNOWN_HOSTS="$RIK_STATE/known_hosts"

# ------------------------------------------------------------------ small helpers
ns_inode() { stat -L -c %i "$1"; }

# Replace (or with empty CONTENT remove) our marked block in FILE, writing in place: /etc/hosts may be
# a bind mount in containers, where sed -i's rename would fail.
set_block() {
    local file=$1 content=$2 rest
    [[ -e $file ]] || : >"$file"
    rest=$(awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0==b{skip=1;next} $0==e{skip=0;next} !skip' "$file")
    {
        if [[ -n $rest ]]; then printf '%s\n' "$rest"; fi
        if [[ -n $content ]]; then printf '%s\n%s\n%s\n' "$MARK_BEGIN" "$content" "$MARK_END"; fi
    } >"$file.rik.tmp"
    cat "$file.rik.tmp" >"$file"
    rm -f "$file.rik.tmp"
}

# Write FILE only when CONTENT differs; exit status 0 = changed.
write_if_changed() {
    local file=$1 content=$2
    if [[ -e $file ]] && [[ "$(cat "$file")" == "$content" ]]; then return 1; fi
    printf '%s\n' "$content" >"$file"
}

# The pid of NAME's listening sshd, if its pid file names a live sshd inside NAME's network namespace.
sshd_pid() {
    local name=$1 pid
    pid=$(pid_of_file "$SSHD_DIR/$name.pid") || return 1
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == /usr/sbin/sshd ]] || return 1
    [[ "$(ns_inode "/proc/$pid/ns/net")" == "$(ns_inode "$(netns_path "$name")")" ]] || return 1
    printf '%s\n' "$pid"
}

# ------------------------------------------------------------------ namespaces and links
ensure_namespaces() {
    local name p u
    mkdir -p "$RIK_STATE/uts"
    for name in "${RIK_HOSTS[@]}"; do
        p=$(netns_path "$name")
        if ! mountpoint -q "$p" 2>/dev/null; then
            rm -f "$p" # stale file (e.g. /run kept across a reboot): `ip netns add` would refuse it
            ip netns add "$name"
        fi
        # A persistent UTS namespace (bind-mounted ns file) so every daemon of this host, started now or
        # later by another script, can join it and see `hostname` = NAME.
        u=$(uts_path "$name")
        if ! mountpoint -q "$u" 2>/dev/null; then
            rm -f "$u"
            touch "$u"
            unshare --uts="$u" true
        fi
        nsenter --uts="$u" hostname "$name"
        on_host "$name" ip link set lo up
        # New namespaces start with forwarding off; make sure, since isolation depends on it.
        on_host "$name" sysctl -qw net.ipv4.ip_forward=0
    done
}

# ensure_veth NS_A DEV_A NS_B DEV_B: a veth pair between two namespaces ("" = root namespace).
# If only one end exists (its peer died with an old namespace), it is recreated.
ensure_veth() {
    local na=$1 da=$2 nb=$3 db=$4
    local -a ipa=(ip) ipb=(ip)
    [[ -n $na ]] && ipa=(ip -n "$na")
    [[ -n $nb ]] && ipb=(ip -n "$nb")
    if "${ipa[@]}" link show "$da" &>/dev/null && "${ipb[@]}" link show "$db" &>/dev/null; then
        return 0
    fi
    "${ipa[@]}" link del "$da" &>/dev/null || true
    "${ipb[@]}" link del "$db" &>/dev/null || true
    "${ipa[@]}" link add "$da" type veth peer name "$db" netns "${nb:-1}"
}

ensure_links() {
    # root <-> rik-gw
    ensure_veth "" "$ROOT_VETH" rik-gw eth0
    ip addr replace 10.200.1.1/24 dev "$ROOT_VETH"
    ip link set "$ROOT_VETH" up
    ip -n rik-gw addr replace 10.200.1.2/24 dev eth0
    ip -n rik-gw link set eth0 up
    # rik-gw <-> rik-front
    ensure_veth rik-gw eth1 rik-front eth0
    ip -n rik-gw addr replace 10.200.2.1/24 dev eth1
    ip -n rik-gw link set eth1 up
    ip -n rik-front addr replace 10.200.2.2/24 dev eth0
    ip -n rik-front link set eth0 up
    # rik-front's bridge for the compute subnet
    if ! ip -n rik-front link show br0 &>/dev/null; then
        ip -n rik-front link add br0 type bridge forward_delay 0 stp_state 0
    fi
    ip -n rik-front addr replace 10.200.3.1/24 dev br0
    ip -n rik-front link set br0 up
    local c
    for c in c1 c2; do
        ensure_veth rik-front "$c" "rik-$c" eth0
        ip -n rik-front link set "$c" master br0
        ip -n rik-front link set "$c" up
        ip -n "rik-$c" addr replace "${ADDR[rik-$c]}/24" dev eth0
        ip -n "rik-$c" link set eth0 up
    done
}

ensure_routes() {
    # Root: only rik-gw's subnet is connected; anything else in 10.200/16 must fail at once instead of
    # leaving through the default route.
    ip route replace unreachable 10.200.0.0/16
    # rik-front reaches rik-gw by its name (10.200.1.2): rik-gw accepts it as a local address, no forwarding.
    ip -n rik-front route replace 10.200.1.2/32 via 10.200.2.1
    # c1/c2 reach rik-front by its name (10.200.2.2) the same way, via its bridge address.
    ip -n rik-c1 route replace 10.200.2.2/32 via 10.200.3.1
    ip -n rik-c2 route replace 10.200.2.2/32 via 10.200.3.1
}

write_etc_hosts() {
    local name lines=""
    for name in "${RIK_HOSTS[@]}"; do lines+="${ADDR[$name]} $name"$'\n'; done
    set_block /etc/hosts "${lines%$'\n'}"
}

# ------------------------------------------------------------------ users and keys
ensure_users() {
    local u home
    for u in "${USERS[@]}"; do
        id "$u" &>/dev/null || useradd -m -s /bin/bash "$u"
        if [[ $u == rikpw ]]; then
            printf '%s:%s\n' "$u" "$PASSWORD_rikpw" | chpasswd
        else
            # useradd leaves the account locked ('!'); with UsePAM no that refuses even key logins.
            usermod -p '*' "$u"
        fi
        home=$(getent passwd "$u" | cut -d: -f6)
        install -d -m 0700 -o "$u" -g "$u" "$home/.ssh"
    done
}

ensure_keys() {
    local u home auth
    install -d -m 0700 "$KEY_DIR"
    for u in "${KEY_USERS[@]}"; do
        local pp=""
        if [[ $u == rikpp ]]; then pp=$PASSPHRASE_rikpp; fi
        [[ -s $KEY_DIR/$u && -s $KEY_DIR/$u.pub ]] ||
            ssh-keygen -q -t ed25519 -N "$pp" -C "rik-test-client-$u" -f "$KEY_DIR/$u" <<<y >/dev/null
        chmod 0600 "$KEY_DIR/$u"
    done
    for u in "${CLUSTER_USERS[@]}"; do
        home=$(getent passwd "$u" | cut -d: -f6)
        if [[ ! -s $home/.ssh/id_ed25519 || ! -s $home/.ssh/id_ed25519.pub ]]; then
            rm -f "$home/.ssh/id_ed25519" "$home/.ssh/id_ed25519.pub"
            runuser -u "$u" -- ssh-keygen -q -t ed25519 -N "" -C "rik-test-intra-$u" -f "$home/.ssh/id_ed25519"
        fi
    done
    # authorized_keys on the shared home = valid on every host.
    for u in "${USERS[@]}"; do
        home=$(getent passwd "$u" | cut -d: -f6)
        auth=""
        if [[ -s $KEY_DIR/$u.pub ]]; then auth+=$(cat "$KEY_DIR/$u.pub")$'\n'; fi
        if [[ -s $home/.ssh/id_ed25519.pub ]]; then auth+=$(cat "$home/.ssh/id_ed25519.pub")$'\n'; fi
        if [[ -n $auth ]]; then
            printf '%s' "$auth" >"$home/.ssh/authorized_keys"
            chown "$u:$u" "$home/.ssh/authorized_keys"
            chmod 0600 "$home/.ssh/authorized_keys"
        else
            rm -f "$home/.ssh/authorized_keys" # rikpw: password only
        fi
    done
}

ensure_host_keys() {
    local name known="" line
    install -d -m 0755 "$SSHD_DIR"
    for name in "${RIK_HOSTS[@]}"; do
        [[ -s $SSHD_DIR/$name.key && -s $SSHD_DIR/$name.key.pub ]] ||
            ssh-keygen -q -t ed25519 -N "" -C "rik-test-host-$name" -f "$SSHD_DIR/$name.key" <<<y >/dev/null
        chmod 0600 "$SSHD_DIR/$name.key"
        # Known by name and by every address (clients behind -J check the name they were given).
        line="$name,${LISTEN[$name]// /,} $(cut -d' ' -f1,2 "$SSHD_DIR/$name.key.pub")"
        known+="$line"$'\n'
    done
    printf '%s' "$known" >"$KNOWN_HOSTS"
    chmod 0644 "$KNOWN_HOSTS"
    # Inside the cluster (rik on rik-front running `ssh rik-c1`), host keys are checked against the
    # system-wide file: the PBS/LSF emulators rely on it.
    set_block /etc/ssh/ssh_known_hosts "${known%$'\n'}"
}

write_client_configs() {
    local u cfg
    install -d -m 0755 "$RIK_STATE/askpass"
    printf '#!/bin/sh\n# SSH_ASKPASS helper for rik test user rikpw\necho %s\n' "$PASSWORD_rikpw" >"$RIK_STATE/askpass/rikpw"
    printf '#!/bin/sh\n# SSH_ASKPASS helper for the key of rik test user rikpp\necho %s\n' "$PASSPHRASE_rikpp" >"$RIK_STATE/askpass/rikpp"
    chmod 0755 "$RIK_STATE/askpass/rikpw" "$RIK_STATE/askpass/rikpp"
    for u in "${USERS[@]}"; do
        cfg="# rik test cluster, client side for user $u (generated by tests/cluster/hosts.sh).
# -J passes -F to the jump hosts, so identity and known hosts here apply to every hop.
Host rik-gw rik-front rik-c1 rik-c2 10.200.*
    User $u
    IdentitiesOnly yes
    UserKnownHostsFile $KNOWN_HOSTS
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    ConnectTimeout 10"
        if [[ $u == rikpw ]]; then
            cfg+=$'\n    PubkeyAuthentication no\n    PreferredAuthentications password'
        else
            cfg+=$'\n    IdentityFile '"$KEY_DIR/$u"
        fi
        if [[ $u == rik ]]; then
            printf '%s\n' "$cfg" >"$RIK_STATE/ssh_config"
        else
            printf '%s\n' "$cfg" >"$RIK_STATE/ssh_config.$u"
        fi
    done
}

# ------------------------------------------------------------------ sshd
sshd_config_text() {
    local name=$1 a
    cat <<EOF
# sshd of rik test host $name (generated by tests/cluster/hosts.sh; edit $name.extra.conf instead,
# then: tests/cluster/hosts.sh reload $name).
# The drop-in comes first because sshd keeps the first value it reads for an option.
Include $SSHD_DIR/$name.extra.conf

EOF
    for a in ${LISTEN[$name]}; do echo "ListenAddress $a:22"; done
    cat <<EOF
HostKey $SSHD_DIR/$name.key
PidFile $SSHD_DIR/$name.pid
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
StrictModes yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
MaxSessions 50
MaxStartups 100
ClientAliveInterval 5
ClientAliveCountMax 3
LogLevel VERBOSE
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
}

start_sshd() {
    local name=$1 a
    local conf="$SSHD_DIR/$name.conf"
    rm -f "$SSHD_DIR/$name.pid"
    # It daemonizes (stdio to /dev/null), so it outlives this script and holds no pipe of the caller.
    on_host "$name" /usr/sbin/sshd -f "$conf" -E "$SSHD_DIR/$name.log"
    for a in ${LISTEN[$name]}; do wait_tcp "$name" "$a" 22 10; done
    sshd_pid "$name" >/dev/null || die "sshd of $name did not start; see $SSHD_DIR/$name.log"
}

ensure_sshd() {
    local name conf changed pid
    # Privilege separation directory that Debian's sshd insists on (normally made by systemd).
    install -d -m 0755 /run/sshd
    for name in "${RIK_HOSTS[@]}"; do
        conf="$SSHD_DIR/$name.conf"
        changed=0
        # `up` is the baseline: a drop-in left behind by an interrupted test is emptied.
        write_if_changed "$SSHD_DIR/$name.extra.conf" "# overrides for $name's sshd (see $name.conf)" && changed=1
        write_if_changed "$conf" "$(sshd_config_text "$name")" && changed=1
        /usr/sbin/sshd -t -f "$conf" || die "invalid sshd config $conf"
        if pid=$(sshd_pid "$name"); then
            if [[ $changed == 1 ]]; then reload_sshd "$name"; fi
        else
            # Our sshd, but stranded in a namespace that was deleted and made anew: replace it.
            if pid=$(pid_of_file "$SSHD_DIR/$name.pid") &&
                tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-f $conf "; then
                log "sshd $pid of $name runs outside the namespace of $name: stopping it"
                stop_pidfile "$SSHD_DIR/$name.pid" 5
            fi
            start_sshd "$name"
        fi
    done
}

reload_sshd() {
    local name=$1 pid before i
    pid=$(sshd_pid "$name") || die "sshd of $name is not running (tests/cluster/up)"
    /usr/sbin/sshd -t -f "$SSHD_DIR/$name.conf" || die "config of $name's sshd is invalid: not reloading"
    # sshd re-executes itself on SIGHUP; it is ready again when it logs "Server listening" once more.
    before=$(grep -c 'Server listening on' "$SSHD_DIR/$name.log" || true)
    kill -HUP "$pid"
    for ((i = 0; i < 100; i++)); do
        (($(grep -c 'Server listening on' "$SSHD_DIR/$name.log" || true) >= before + $(wc -w <<<"${LISTEN[$name]}"))) && break
        sleep 0.05
    done
    local a
    for a in ${LISTEN[$name]}; do wait_tcp "$name" "$a" 22 5; done
    sshd_pid "$name" >/dev/null || die "sshd of $name died on reload; see $SSHD_DIR/$name.log"
}

restart_sshd() {
    local name=$1
    # Only the listener: session processes are its children in their own right and keep running.
    stop_pidfile "$SSHD_DIR/$name.pid" 5
    /usr/sbin/sshd -t -f "$SSHD_DIR/$name.conf" || die "invalid sshd config $SSHD_DIR/$name.conf"
    start_sshd "$name"
}

# ------------------------------------------------------------------ checks
expect_tcp() {
    local want=$1 from=$2 to=$3 addr
    addr=$(getent hosts "$to" | awk '{print $1}')  || true
    addr=${addr:-$to}
    if tcp_ok "$from" "$addr" 22; then
        [[ $want == yes ]] || die "isolation broken: $from reaches $to ($addr:22)"
    else
        [[ $want == no ]] || die "$from cannot reach $to ($addr:22)"
    fi
}

check_reachability() {
    local c
    expect_tcp yes root rik-gw
    for c in rik-front rik-c1 rik-c2 10.200.2.1 10.200.3.1; do expect_tcp no root "$c"; done
    expect_tcp yes rik-gw rik-front
    for c in rik-c1 rik-c2 10.200.3.1; do expect_tcp no rik-gw "$c"; done
    for c in rik-gw rik-c1 rik-c2; do expect_tcp yes rik-front "$c"; done
    expect_tcp yes rik-c1 rik-front
    expect_tcp yes rik-c1 rik-c2
    expect_tcp yes rik-c2 rik-front
    expect_tcp yes rik-c2 rik-c1
    for c in rik-c1 rik-c2; do
        expect_tcp no "$c" rik-gw
        expect_tcp no "$c" 10.200.2.1
    done
}

# expect_output WANT DESCRIPTION CMD...: run CMD without a terminal, compare its stdout.
expect_output() {
    local want=$1 what=$2 out err
    shift 2
    err=$(mktemp)
    out=$(setsid -w timeout 30 "$@" </dev/null 2>"$err") || true
    if [[ $out != "$want" ]]; then
        cat "$err" >&2
        rm -f "$err"
        die "$what: expected '$want', got '$out' (command: $*)"
    fi
    rm -f "$err"
}

# shellcheck disable=SC2016  # the $(...) in single quotes are for the remote shell
check_logins() {
    local S=$RIK_STATE
    # The logins are independent; run them concurrently (each costs a few ssh handshakes).
    local dir
    dir=$(mktemp -d)
    local -a pids=()
    bg_expect() {
        (expect_output "$@") >"$dir/${#pids[@]}" 2>&1 &
        pids+=($!)
    }
    bg_expect rik-gw "key login to rik-gw" ssh -F "$S/ssh_config" rik-gw hostname
    bg_expect rik-c1 "key login through the chain" ssh -F "$S/ssh_config" -J rik-gw,rik-front rik-c1 hostname
    bg_expect rikpp@rik-front "passphrase key (askpass)" env SSH_ASKPASS="$S/askpass/rikpp" SSH_ASKPASS_REQUIRE=force \
        ssh -F "$S/ssh_config.rikpp" -J rik-gw rik-front 'echo $(whoami)@$(hostname)'
    bg_expect rikpw@rik-gw "password login (askpass)" env SSH_ASKPASS="$S/askpass/rikpw" SSH_ASKPASS_REQUIRE=force \
        ssh -F "$S/ssh_config.rikpw" rik-gw 'echo $(whoami)@$(hostname)'
    # Inside the cluster: known hosts checked against /etc/ssh/ssh_known_hosts, the user's own key.
    local -a front=(nsenter --net="$(netns_path rik-front)" --uts="$(uts_path rik-front)" --)
    bg_expect "rik-c1 rik-c2" "rik ssh from rik-front to c1, c1 to c2" \
        "${front[@]}" runuser -u rik -- ssh -o BatchMode=yes -o StrictHostKeyChecking=yes rik-c1 \
        'echo $(hostname) $(ssh -o BatchMode=yes -o StrictHostKeyChecking=yes rik-c2 hostname)'
    bg_expect rik-c2 "rik2 ssh from rik-front to c2" \
        "${front[@]}" runuser -u rik2 -- ssh -o BatchMode=yes -o StrictHostKeyChecking=yes rik-c2 hostname
    # The remote kernel: Debian's python3 with ipykernel, nothing of rik.
    bg_expect ok "ipykernel on rik-c1 for rik" ssh -F "$S/ssh_config" -J rik-gw,rik-front rik-c1 \
        "/usr/bin/python3 -c 'import ipykernel; print(\"ok\")'"
    local i failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            cat "$dir/$i" >&2
            failed=1
        fi
    done
    rm -rf "$dir"
    [[ $failed == 0 ]] || die "login checks failed (above)"
}

# ------------------------------------------------------------------ state file
write_state() {
    local json
    json=$(
        STATE=$RIK_STATE SSHD_DIR=$SSHD_DIR KEY_DIR=$KEY_DIR KNOWN_HOSTS=$KNOWN_HOSTS "$RIK_PY" - <<'PY'
import json, os, pwd
e = os.environ
state, sshd, keys = e["STATE"], e["SSHD_DIR"], e["KEY_DIR"]
hosts = {
    "rik-gw": ["10.200.1.2", "10.200.2.1"],
    "rik-front": ["10.200.2.2", "10.200.3.1"],
    "rik-c1": ["10.200.3.11"],
    "rik-c2": ["10.200.3.12"],
}
users = {
    "rik": (f"{keys}/rik", None, None),
    "rikpp": (f"{keys}/rikpp", "rik-passphrase", None),
    "rikpw": (None, None, "rik-password"),
    "rik2": (f"{keys}/rik2", None, None),
}
print(json.dumps({
    "state_dir": state,
    "hosts": {
        name: {
            "address": addrs[0],
            "addresses": addrs,
            "netns": f"/run/netns/{name}",
            "uts": f"{state}/uts/{name}",
            "sshd_pid_file": f"{sshd}/{name}.pid",
            "sshd_config": f"{sshd}/{name}.conf",
            "extra_conf": f"{sshd}/{name}.extra.conf",
            "sshd_log": f"{sshd}/{name}.log",
            "host_key_pub": f"{sshd}/{name}.key.pub",
        }
        for name, addrs in hosts.items()
    },
    "users": {
        name: {
            "key": key,
            "passphrase": passphrase,
            "password": password,
            "ssh_config": f"{state}/ssh_config" if name == "rik" else f"{state}/ssh_config.{name}",
            "askpass": f"{state}/askpass/{name}" if (passphrase or password) else None,
            "home": pwd.getpwnam(name).pw_dir,
            "uid": pwd.getpwnam(name).pw_uid,
        }
        for name, (key, passphrase, password) in users.items()
    },
    "known_hosts": e["KNOWN_HOSTS"],
    "ssh_config": f"{state}/ssh_config",
    "chain": ["rik-gw", "rik-front"],
    "compute": ["rik-c1", "rik-c2"],
    "python": "/usr/bin/python3",
    "kernels": {
        "python3": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "ir": ["/usr/bin/R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"],
    },
}))
PY
    )
    # Only our top-level keys: sections written by other scripts (slurm, sge, pbs, lsf) are kept.
    cluster_json_update "$json"
}

# ------------------------------------------------------------------ down
# PIDs of processes inside host NAME's network namespace (the pid namespace is shared).
pids_in_netns() {
    "$RIK_PY" - "$(netns_path "$1")" <<'PY'
import os, sys
want = os.stat(sys.argv[1]).st_ino
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == want:
            print(pid)
    except OSError:
        pass
PY
}

hosts_down() {
    local name pids pid i
    for name in "${RIK_HOSTS[@]}"; do
        stop_pidfile "$SSHD_DIR/$name.pid" 5
    done
    # What is still inside a host namespace was started there by the cluster scripts or by a test
    # (ssh sessions, kernels, daemons whose own `down` failed).  End those, by pid, before the
    # namespace goes: a namespace with processes in it outlives `ip netns del`.
    for name in "${RIK_HOSTS[@]}"; do
        mountpoint -q "$(netns_path "$name")" 2>/dev/null || continue
        mapfile -t pids < <(pids_in_netns "$name")
        [[ ${#pids[@]} -gt 0 ]] || continue
        for pid in "${pids[@]}"; do
            log "ending leftover pid $pid on $name: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
            kill -TERM "$pid" 2>/dev/null || true
        done
        for ((i = 0; i < 30; i++)); do
            mapfile -t pids < <(pids_in_netns "$name")
            [[ ${#pids[@]} -eq 0 ]] && break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    done
    for name in "${RIK_HOSTS[@]}"; do
        if [[ -e "$(netns_path "$name")" ]]; then ip netns del "$name" 2>/dev/null || rm -f "$(netns_path "$name")"; fi
        if mountpoint -q "$(uts_path "$name")" 2>/dev/null; then umount "$(uts_path "$name")"; fi
        rm -f "$(uts_path "$name")"
    done
    # The veths and the bridge went with their namespaces; the root end too, unless it lingers.
    ip link del "$ROOT_VETH" &>/dev/null || true
    ip route del unreachable 10.200.0.0/16 &>/dev/null || true
    set_block /etc/hosts ""
    set_block /etc/ssh/ssh_known_hosts ""
    rm -rf "$SSHD_DIR" "$KEY_DIR" "$RIK_STATE/askpass" "$RIK_STATE/uts" "$KNOWN_HOSTS" "$RIK_STATE"/ssh_config*
    rm -f "$RIK_OWNER_FILE"
    log "hosts down"
}

# ------------------------------------------------------------------ main
need_host() {
    [[ -n ${1:-} && -n ${ADDR[$1]:-} ]] || die "usage: $0 ${FUNCNAME[1]:-verb} NAME (one of ${RIK_HOSTS[*]})"
}

case "${1:-}" in
up)
    t0=$(date +%s%N)
    mkdir -p "$RIK_STATE"
    chmod 0755 "$RIK_STATE"
    printf '%s\n' "$RIK_STATE" >"$RIK_OWNER_FILE"
    ensure_namespaces
    ensure_links
    ensure_routes
    write_etc_hosts
    ensure_users
    ensure_keys
    ensure_host_keys
    write_client_configs
    write_state
    ensure_sshd
    check_reachability
    check_logins
    log "hosts up and verified in $((($(date +%s%N) - t0) / 1000000))ms: ${RIK_HOSTS[*]}"
    ;;
down) hosts_down ;;
reload)
    need_host "${2:-}"
    reload_sshd "$2"
    log "reloaded sshd of $2"
    ;;
restart-sshd)
    need_host "${2:-}"
    restart_sshd "$2"
    log "restarted sshd of $2 (pid $(sshd_pid "$2"))"
    ;;
check)
    check_reachability
    check_logins
    log "hosts checked"
    ;;
*) die "usage: $0 up|down|check|reload NAME|restart-sshd NAME" ;;
esac
