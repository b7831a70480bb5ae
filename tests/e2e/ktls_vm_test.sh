#!/usr/bin/env bash
# The kTLS fast path, tested where the kernel has kTLS: boots Debian 12's own
# kernel under QEMU/TCG (tests/vm/run; the kernel package and the base
# initramfs are cached in .deps/vm) with the static ktls_selftest inside,
# and reports one line per case (TLS 1.3 AES-128/256-GCM and TLS 1.2
# ECDHE-ECDSA-AES128/256-GCM: recv/send 4 MiB each way, splice to a plain
# TCP backend and back, close_notify both ways, records buffered in user
# space before the switch, KeyUpdate detection).
# Skips, saying why, when the VM cannot be started here (no qemu, no kernel
# package reachable, no static build); any other trouble is a failure.
. "$(dirname "$0")/lib.sh"

selftest=$ZT_BUILD/tests/vm/ktls_selftest
vmrun=$HERE/../vm/run

if [ ! -x "$selftest" ]; then
    skip "kTLS VM tier (ktls_selftest not built: this build cannot link statically, e.g. a sanitizer build)"
    exit 0
fi

start=$SECONDS
ZT_VM_TIMEOUT=${ZT_VM_TIMEOUT:-600} "$vmrun" "$selftest" > "$T/vm.log" 2>&1
rc=$?
echo "# tests/vm/run exited $rc after $((SECONDS - start))s"
if [ $rc = 77 ]; then
    skip "kTLS VM tier ($(sed -n 's/^skipped: //p' "$T/vm.log" | tail -1))"
    exit 0
fi

# The VM's lines: "ok|not ok|skip ktls_selftest: <case>: <detail>".
grep -E '^#' "$T/vm.log"
grep -E '^(ok|not ok|skip) ' "$T/vm.log" | sed -E 's/^(ok|not ok|skip) ktls_selftest: /\1 kTLS in VM: /'
grep -q '^not ok ' "$T/vm.log" && _failed=1
if [ $rc != 0 ] && ! grep -q '^not ok ' "$T/vm.log"; then
    not_ok "kTLS VM run (tests/vm/run exited $rc)"
    sed 's/^/#   /' "$T/vm.log" | tail -40
fi
[ $rc = 0 ]
