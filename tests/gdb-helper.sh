#!/bin/sh
# SPDX-License-Identifier: MIT
# tools/eddy-gdb.py: `eddy tasks` lists the tasks of tests/gdb-target, stopped
# by SIGTRAP inside its main task, with their names and states, and `eddy bt`
# walks the sleeping task's saved frames down to the function it sleeps in.
# Prints TAP for make check; runs from the build directory, srcdir pointing
# at the sources.
srcdir=${srcdir:-.}
command -v gdb >/dev/null 2>&1 || { echo "1..0 # SKIP gdb is not installed"; exit 0; }
gdb -q -batch -ex 'python print("py")' 2>/dev/null | grep -q '^py$' ||
    { echo "1..0 # SKIP this gdb has no Python"; exit 0; }
out=$(${LIBTOOL:-./libtool} --mode=execute gdb -q -batch -nx -ex run -ex "source $srcdir/tools/eddy-gdb.py" \
    -ex 'eddy tasks' -ex 'eddy bt 2' -ex kill tests/gdb-target 2>&1)
echo 1..3
check() { # n, pattern, description
    if printf '%s\n' "$out" | grep -q -- "$2"; then
        echo "ok $1 - $3"
    else
        echo "not ok $1 - $3"
        printf '%s\n' "$out" | sed 's/^/# /'
    fi
}
check 1 'task 1 "main_task": running' "eddy tasks: the main task, named after its function, running"
check 2 'task 2 "the-sleeper": sleeping' "eddy tasks: the named task, sleeping"
check 3 ' sleeping_for_gdb at .*gdb-target.c:' "eddy bt 2: the sleeping task's own function, with its source line"
