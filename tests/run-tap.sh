#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs one Criterion suite for automake's TAP driver, once per backend that
# can run here (tests/backends lists them), as one TAP stream: each result is
# named "[backend] suite::test". EDDY_TEST_BACKENDS overrides the list;
# EDDY_TEST_WRAPPER (e.g. valgrind, from make check-valgrind) runs in front of
# the binary. Suites that choose their backend themselves run once; the
# io_uring and kqueue suites are skipped when EDDY_TEST_BACKENDS leaves their
# backend out. LeakSanitizer reports when a test's process exits, after
# Criterion has counted the test as passed: a report in the output is one
# more failure.
test_binary=$1
shift
dir=$(dirname "$test_binary")
case $(basename "$test_binary") in
uring)
    case " ${EDDY_TEST_BACKENDS:-io_uring} " in
    *" io_uring "*) backends=default ;;
    *) echo "1..0 # SKIP io_uring is not in EDDY_TEST_BACKENDS"; exit 0 ;;
    esac
    ;;
kqueue)
    case " ${EDDY_TEST_BACKENDS:-kqueue} " in
    *" kqueue "*) backends=default ;;
    *) echo "1..0 # SKIP kqueue is not in EDDY_TEST_BACKENDS"; exit 0 ;;
    esac
    ;;
caps | tap-caps) backends=default ;;
*) backends=${EDDY_TEST_BACKENDS:-$("$dir/backends" 2>/dev/null)} ;;
esac
[ -n "$backends" ] || { echo "1..0 # SKIP no backend can run here"; exit 0; }

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
echo "TAP version 13"
planned=0
status=0
for backend in $backends; do
    if [ "$backend" = default ]; then
        $EDDY_TEST_WRAPPER "$test_binary" --tap="$out" "$@" 2>"$err" >&2 || status=$?
    else
        EDDY_BACKEND=$backend $EDDY_TEST_WRAPPER "$test_binary" --tap="$out" "$@" 2>"$err" >&2 ||
            status=$?
    fi
    cat "$err" >&2
    n=$(sed -n 's/^1\.\.\([0-9]*\).*/\1/p' "$out" | head -n 1)
    planned=$((planned + ${n:-0}))
    if [ "$backend" = default ]; then
        grep -v -e '^TAP version' -e '^1\.\.' "$out"
    else
        sed -e '/^TAP version/d' -e '/^1\.\./d' \
            -e "s/^\(not ok\|ok\) - /\1 - [$backend] /" "$out"
    fi
    if grep -q 'ERROR: LeakSanitizer' "$err"; then
        planned=$((planned + 1))
        echo "not ok - [$backend] $(basename "$test_binary"): LeakSanitizer reported leaks (see above in the log)"
    fi
done
echo "1..$planned"
exit $status
