#!/usr/bin/env bash
# Self-test of rik's LSF emulator (a TEST FIXTURE) on the running test cluster (root).
#
#   tests/cluster/emulators/selftest.sh [--record DIR] [TEST ...]
#
# As user rik on rik-front (ssh -tt through rik-gw, under a local pty, the way rik runs a launcher):
# bsub -Is banners, a shell on rik-c1/rik-c2 with LSB_JOBID, bkill of running and of pending jobs,
# hangup and SIGKILL of the client -- and after each, a look at the processes on the nodes (by network
# namespace): nothing of the job may remain.
# --record DIR also writes the parser transcripts (tests/data/transcripts/lsf-*.txt).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib.sh"
require_root "$@"

[[ -e $RIK_JSON ]] || die "test cluster is not up: run tests/cluster/up"
for h in "${RIK_HOSTS[@]}"; do
    pid_of_file "$RIK_STATE/sshd/$h.pid" >/dev/null || die "sshd of $h is not running: run tests/cluster/up"
done
# Test this checkout: (re)install when /opt/rik-emulators is missing or differs from it.
if ! cmp -s "$here/lib/rik_emulator.py" /opt/rik-emulators/lib/rik_emulator.py ||
    ! diff -rq -x __pycache__ "$here/lib/rik_emu" /opt/rik-emulators/lib/rik_emu >/dev/null ||
    ! diff -rq "$here/lsf/bin" /opt/rik-emulators/lsf/bin >/dev/null; then
    log "installing the emulators of this checkout (tests/cluster/emulators.sh up)"
    "$here/../emulators.sh" up
fi
exec /usr/bin/python3 "$here/selftest.py" "$@"
