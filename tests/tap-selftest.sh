#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks the TAP runner (tests/tap.c) through tests/tap-selftest, whose tests
# pass, fail, skip, time out and crash on purpose: every result line and
# diagnostic it must print, and what it must not. Prints TAP.
# EDDY_TEST_EMULATOR runs the binary (wine for a mingw build); EXEEXT is .exe there.
bin=tests/tap-selftest${EXEEXT}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
$EDDY_TEST_EMULATOR "$bin" >"$out" 2>/dev/null
status=$?

n=0
failed=0
check() { # description, then a command that must succeed
    n=$((n + 1))
    description=$1
    shift
    if "$@"; then
        echo "ok $n - $description"
    else
        echo "not ok $n - $description"
        failed=1
    fi
}
has() { grep -qxF -e "$1" "$out"; }
has_prefix() { grep -q "^$1" "$out"; }
lacks() { ! grep -qF -e "$1" "$out"; }

check "exits 1 when a test failed" test "$status" = 1
check "TAP version 13 first" test "$(head -n 1 "$out")" = "TAP version 13"
check "plan of 13 tests" has "1..13"
check "no carriage returns" lacks "$(printf '\r')"
check "passing matchers" has "ok - selftest::passes"
check "failed assert" has "not ok - selftest::assert_fails"
check "assert names the expression and message" \
    has_prefix "# .*tap-selftest.c:[0-9]*: assertion failed: eq(int, four, 5): four is 4$"
check "assert prints both values" has "#   eq(int): four = 4, 5 = 5"
check "a failed assert ends the test" lacks "after a failed assert"
check "failed expect" has "not ok - selftest::expect_fails_and_goes_on"
check "expect prints both strings" has '#   eq(str): "left" = "left", "right" = "right"'
check "a failed expect goes on" has "# after a failed expect"
check "false expression" has "not ok - selftest::a_false_expression_fails"
check "false expression printed" has_prefix "# .*: assertion failed: 1 + 1 == 3$"
check "cr_fatal" has "not ok - selftest::fatal"
check "cr_fatal message" has_prefix "# .*: fatal 42$"
check "two-line message" has "not ok - selftest::message_of_two_lines"
check "its first line" has_prefix "# .*: assertion failed: 0: first line$"
check "its second line is a comment" has "# ok - not a result"
check "skip with reason" has "ok - selftest::skips # SKIP not here: 7"
check "timeout" has "not ok - selftest::times_out # timed out after 0.5 s"
check "crash" has_prefix "not ok - selftest::crashes # "
check "exit() without a result" has_prefix "not ok - selftest::exits # exited with "
check "failure on another thread" has "not ok - selftest::fails_on_another_thread"
check "its message" has_prefix "# .*: assertion failed: eq(int, 1, 2): on another thread$"
check "it ends the test" lacks "the main thread went on"
check "init then fini" has "# fini ran after state 2"
check "init and fini passing" has "ok - selftest::init_and_fini"
check "fini after a failure" has "# fini ran after state 3"
check "failure with fini" has "not ok - selftest::fini_after_a_failure"
check "13 results" test "$(grep -c '^\(not \)\{0,1\}ok - ' "$out")" = 13
echo "1..$n"
if [ "$failed" = 1 ]; then
    echo "# output of $bin:"
    sed 's/^/#   /' "$out"
fi
exit 0
