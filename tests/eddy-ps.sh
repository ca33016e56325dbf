#!/bin/sh
# SPDX-License-Identifier: MIT
# tools/eddy-ps against tests/eddy-ps-target (1 000 tasks in known states on
# one loop, one more on a second loop), linked with the shared library and
# with the static one: the count of tasks, their names, states, the lock
# they share and who holds it, awaited-by edges, the tree, and function
# names from the backtraces. Then against a process without eddy, a pid
# that does not exist, and no pid. Prints TAP for make check; runs from the
# build directory.
tmp=$(mktemp -d) || exit 99
target_pid=
cleanup() {
    [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
[ -x tools/eddy-ps ] || { echo "1..0 # SKIP no tools/eddy-ps (not Linux)"; exit 0; }

srcdir=${srcdir:-.}
. "$srcdir/tests/tap-check.sh"

# Starts a target, waits for its "ready"; its pid in target_pid.
start() {
    rm -f "$tmp/ready"
    "$@" >"$tmp/ready" 2>"$tmp/target.err" &
    target_pid=$!
    for i in $(seq 100); do
        grep -q ready "$tmp/ready" 2>/dev/null && return 0
        kill -0 "$target_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "Bail out! $1 did not get ready: $(cat "$tmp/target.err")"
    exit 99
}

stop() {
    kill "$target_pid" 2>/dev/null
    wait "$target_pid" 2>/dev/null
    target_pid=
}

# Reads the target into $tmp/out and $tmp/err; its exit status in status,
# and the start of what it said in $tmp/log (for a failure's details).
read_target() {
    timeout 60 tools/eddy-ps "$target_pid" >"$tmp/out" 2>"$tmp/err"
    status=$?
    { echo "exit $status"; cat "$tmp/err"; head -20 "$tmp/out"; } >"$tmp/log"
}

count() { # pattern: lines of the output matching it
    grep -c -- "$1" "$tmp/out"
}

# expect N PATTERN DESCRIPTION: exactly N lines match
expect() {
    got=$(count "$2")
    echo "want $1 lines matching '$2', got $got" >"$tmp/log"
    [ "$got" = "$1" ]
    check $? "[$backend] $3"
}

# every backend here (EDDY_TEST_BACKENDS overrides the list, as for the suites)
backends=${EDDY_TEST_BACKENDS:-$(tests/backends 2>/dev/null)}
[ -n "$backends" ] || backends=epoll
# is reading another process permitted here at all?
start tests/eddy-ps-target
tools/eddy-ps "$target_pid" >/dev/null 2>"$tmp/err"
if [ $? = 4 ]; then
    echo "1..0 # SKIP process_vm_readv is not permitted here: $(head -1 "$tmp/err")"
    exit 0
fi
stop
echo "1..$(($(echo $backends | wc -w) * 19 + 6))"

for backend in $backends; do
    EDDY_BACKEND=$backend start tests/eddy-ps-target
    read_target
    [ $status = 0 ]
    check $? "[$backend] eddy-ps reads a running process (exit 0)"

    expect 1 '^process [0-9]* (eddy-ps-target): 2 loops$' "both loops are found"
    expect 1 "^loop 0x[0-9a-f]* ($backend): 1000 tasks" "the first loop's header: 1 000 tasks"
    expect 1001 '^task [0-9]* "' "a line for each task of both loops"
    expect 1 '^task [0-9]* "other-loop": sleeping until' "the second loop's task"
    expect 1 '^task [0-9]* "main": sleeping until' "main sleeps"
    expect 427 '^task [0-9]* "sleeper-[0-9]*": sleeping until .* (in [0-9]* ms)$' "427 sleepers"
    expect 200 '^task [0-9]* "locker-[0-9]*": waiting on lock 0x[0-9a-f]*, held by task [0-9]* (holder)$' \
        "200 tasks wait on the lock, which the holder holds"
    grep -o 'waiting on lock 0x[0-9a-f]*' "$tmp/out" | sort -u >"$tmp/log"
    [ "$(wc -l <"$tmp/log")" = 1 ]
    check $? "[$backend] the lock the 200 wait on is one object, at one address"
    expect 150 '^task [0-9]* "getter-[0-9]*": waiting to get from queue 0x' "150 wait on the queue"
    expect 100 '^task [0-9]* "awaiter-[0-9]*": awaiting future 0x' "100 await a plain future"
    expect 20 '^task [0-9]* "reader-[0-9]*": waiting on recv, fd [0-9]*$' "20 wait in recv"
    expect 1 '^task [0-9]* "parent": waiting for group 0x' "the parent waits for its group"
    expect 99 '^  awaited by task [0-9]* "parent" (group)$' "each of the 99 children is awaited by the parent"
    expect 1 '^task [0-9]* "joiner": awaiting task [0-9]* (holder)$' "the joiner awaits the holder"
    expect 1 '^  awaited by task [0-9]* "joiner" (join)$' "the holder is awaited by the joiner"
    expect 200 ' locker_fn+0x' "backtraces name the test's own (static) function, from .symtab"
    expect 0 '^    #[0-9]* 0x[0-9a-f]* ?$' "every frame is named or placed in a file"
    # the tree: the parent at the root, its children one level below
    sed -n '/^awaited by:/,/^loop /p' "$tmp/out" >"$tmp/tree"
    grep -q '^├── task [0-9]* "parent"$' "$tmp/tree" && grep -q '^│   [├└]── task [0-9]* "child-1"$' "$tmp/tree"
    { echo "no parent with child-1 below it in:"; head -30 "$tmp/tree"; } >"$tmp/log"
    check $? "[$backend] the awaited-by tree puts the children under the parent"
    stop
done

# the static build: the registry is in the executable's .symtab
start tests/eddy-ps-target-static
read_target
[ $status = 0 ] && [ "$(count '^task [0-9]* "')" = 1001 ] && [ "$(count ' holder_fn+0x')" = 1 ]
check $? "a statically linked program: 1 001 tasks, the holder's function named"
stop

# a process whose loops and tasks change while eddy-ps reads it: it still
# ends, and says what it saw (all of it, or with the warning)
start tests/eddy-ps-target --churn
fine=0
for i in 1 2 3 4 5; do
    read_target
    echo "(run $i)" >>"$tmp/log"
    [ $status = 0 ] && { grep -q '^loop 0x[0-9a-f]* ([a-z_]*): 10[0-9][0-9] tasks' "$tmp/out" ||
        grep -q '^(the loop kept changing while it was read' "$tmp/out"; } || break
    fine=$((fine + 1))
done
[ $fine = 5 ]
check $? "a process that keeps changing: 5 reads, each ends and shows the 1 000 tasks or says it kept changing"
stop

# garbage where the loops should be: eddy-ps ends (no hang, no crash) and
# says what it could read
start tests/eddy-ps-garbage tasks
read_target
[ $status = 0 ] && [ "$(count '^loop 0x')" = 2 ] && [ "$(count 'kept changing while it was read')" -ge 1 ]
check $? "a registry of garbage loops, one with a cycle of tasks: both shown, the cycle as torn"
stop
start tests/eddy-ps-garbage loops
read_target
[ $status = 5 ] && grep -q "kept creating or freeing loops" "$tmp/err"
check $? "a loop list that ends in a cycle: refused (exit 5), not walked forever"
stop

# not permitted: as root, read it as nobody
start tests/eddy-ps-target
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    setpriv --reuid=65534 --regid=65534 --clear-groups tools/eddy-ps "$target_pid" \
        >"$tmp/out" 2>"$tmp/err"
    status=$?
    { echo "exit $status"; cat "$tmp/err"; } >"$tmp/log"
    [ $status = 4 ] && grep -q "^eddy-ps: may not read process $target_pid (eddy-ps-target): " \
        "$tmp/err" && grep -q "CAP_SYS_PTRACE" "$tmp/err" && [ ! -s "$tmp/out" ]
    check $? "not permitted: exit 4, the error and what is needed"
else
    n=$((n + 1))
    echo "ok $n - not permitted: exit 4 # SKIP needs root and setpriv to become another user"
fi
stop

# a process without eddy; no such process
sleep 30 &
sleep_pid=$!
for i in $(seq 50); do # until the forked shell has become sleep
    [ "$(cat /proc/$sleep_pid/comm 2>/dev/null)" = sleep ] && break
    sleep 0.1
done
tools/eddy-ps "$sleep_pid" >"$tmp/out" 2>"$tmp/err"
status=$?
kill "$sleep_pid"
tools/eddy-ps 99999999 >>"$tmp/out" 2>>"$tmp/err" # above any pid_max (2^22): no such process
status2=$?
{ echo "exits $status, $status2"; cat "$tmp/err"; } >"$tmp/log"
[ $status = 3 ] && grep -q "^eddy-ps: process $sleep_pid (sleep) does not use eddy" "$tmp/err" &&
    [ $status2 = 1 ] && grep -q "^eddy-ps: no process 99999999$" "$tmp/err"
check $? "a process without eddy (exit 3), and no such process (exit 1), each said"
