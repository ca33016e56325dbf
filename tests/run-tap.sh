#!/bin/sh
# Runs one Criterion suite for automake's TAP driver: one TAP result per test
# case on stdout. EDDY_TEST_WRAPPER (e.g. valgrind, set by make check-valgrind)
# runs in front of the binary.
test_binary=$1
shift
exec $EDDY_TEST_WRAPPER "$test_binary" --tap=/dev/stdout "$@"
