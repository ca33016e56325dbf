#!/bin/sh
# SPDX-License-Identifier: MIT
# The allocation-failure sweep (make check-faults): runs tests/faults-workload
# with tests/faults-shim.so preloaded, once cleanly to count the allocations
# libeddy makes, then once for every N in 1..count with the Nth failing, on
# each backend in EDDY_FAULTS_BACKENDS (default: the Linux backends that run
# here, from tests/backends). A run passes when the workload exits 0 (every
# call gave success or -ENOMEM, the loop completed a follow-up afterwards,
# nothing hung), the shim failed the Nth allocation, and no sanitizer report
# (LeakSanitizer in an --enable-asan build: no leak) is in its output.
# Prints TAP, one test per run; run from the build directory.
workload=${EDDY_FAULTS_WORKLOAD:-tests/faults-workload}
shim=${EDDY_FAULTS_SHIM:-tests/faults-shim.so}
limit=${EDDY_FAULTS_TIMEOUT:-60}
echo "TAP version 13"
if [ ! -x "$workload" ] || [ ! -f "$shim" ]; then
    echo "1..0 # SKIP $workload or $shim not built"
    exit 0
fi
backends=${EDDY_FAULTS_BACKENDS:-$(tests/backends 2>/dev/null | tr ' ' '\n' | grep -E '^(io_uring|epoll)$')}
[ -n "$backends" ] || { echo "1..0 # SKIP neither io_uring nor epoll runs here"; exit 0; }
case $(nm -D "$workload" 2>/dev/null) in
*__asan_init*) leak="LeakSanitizer" ;;
*) leak="no leak check: configure with --enable-asan for LeakSanitizer" ;;
esac
echo "# leaks: $leak"
# The shim goes before ASan's runtime in the search order: it has to, to see
# the calls; ASan then only checks that it is loaded, not that it is first.
ASAN_OPTIONS="verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export ASAN_OPTIONS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
shim_path=$(cd "$(dirname "$shim")" && pwd)/$(basename "$shim")

# run BACKEND N: the workload with the Nth allocation failing (0: none).
run() {
    EDDY_BACKEND=$1 EDDY_FAULTS_FAIL=$2 timeout "$limit" \
        env LD_PRELOAD="$shim_path" "$workload" >"$out" 2>&1
}

planned=0
failed=0
absorbed=0
for backend in $backends; do
    run "$backend" 0
    status=$?
    count=$(sed -n 's/^eddy-faults: allocations=\([0-9]*\).*/\1/p' "$out")
    planned=$((planned + 1))
    if [ $status -ne 0 ] || [ -z "$count" ] || grep -qE 'Sanitizer|runtime error' "$out"; then
        echo "not ok $planned - [$backend] clean run (exit $status)"
        sed 's/^/# /' "$out"
        failed=$((failed + 1))
        continue
    fi
    echo "ok $planned - [$backend] clean run: $count allocations from libeddy"
    n=1
    while [ "$n" -le "$count" ]; do
        run "$backend" "$n"
        status=$?
        planned=$((planned + 1))
        site=$(sed -n 's/^eddy-faults: .* failed=\([0-9]*\) site=\(.*\)/\1 \2/p' "$out")
        enomem=$(sed -n 's/^faults-workload: enomem=\([0-9]*\).*/\1/p' "$out")
        where=$(sed -n 's/^faults-workload: enomem=[0-9]* *\(.*\) (backend.*/\1/p' "$out")
        # the site as /path/libeddy.so+0xOFF(call): its function from addr2line
        case $site in
        *+0x*)
            rest=${site#* }
            lib=${rest%+0x*}
            off=${rest##*+}
            fn=$(addr2line -f -e "$lib" "${off%%(*}" 2>/dev/null | head -n 1)
            [ -n "$fn" ] && [ "$fn" != "??" ] && site="${site%% *} $fn(${off#*(}"
            ;;
        esac
        [ -n "$site" ] || site="? (not reported: the process died)"
        why=
        if [ $status -eq 124 ]; then
            why="timed out after ${limit}s"
        elif [ $status -ne 0 ]; then
            why="exit status $status"
        elif grep -qE 'Sanitizer|runtime error' "$out"; then
            why="sanitizer report"
        elif [ "${site%% *}" != "$n" ]; then
            # the workload made fewer allocations than the clean run: not reached
            echo "ok $planned - [$backend] allocation $n # SKIP not reached in this run"
            n=$((n + 1))
            continue
        fi
        if [ -n "$why" ]; then
            echo "not ok $planned - [$backend] allocation $n (${site#* }): $why"
            sed 's/^/# /' "$out"
            failed=$((failed + 1))
        elif [ "${enomem:-0}" -eq 0 ]; then
            # the library did without it (a cache, an optional feature)
            absorbed=$((absorbed + 1))
            echo "ok $planned - [$backend] allocation $n (${site#* }): absorbed, no call failed"
        else
            echo "ok $planned - [$backend] allocation $n (${site#* }): -ENOMEM from $where; loop usable"
        fi
        n=$((n + 1))
    done
done
echo "1..$planned"
echo "# $planned runs, $failed failed, $absorbed failures absorbed by the library; leaks: $leak"
[ "$failed" -eq 0 ]
