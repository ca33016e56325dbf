#!/bin/sh
# SPDX-License-Identifier: MIT
# make soak: examples/echo-server against tests/soak (SOAK_CONNS connections
# of SOAK_BYTES bytes each, SOAK_CONCURRENCY at a time, random write and read
# sizes, one in 16 reset), SOAK_ROUNDS rounds, on each backend in
# SOAK_BACKENDS (default: io_uring and epoll where they run). The server's
# RSS (VmRSS in /proc/PID/status) and open descriptors (/proc/PID/fd) are
# read after the first round, which warms its caches (task stacks, buffers),
# and after the last: descriptors must be back to the same count, and RSS may
# grow by at most SOAK_RSS_SLACK_KB (default 4096: io_uring's receive buffer
# ring alone, 4 MiB, may take several rounds to be touched whole). The
# defaults (6 rounds of 5000 connections x 8 KiB, a few seconds) see a server
# that keeps 300 bytes per connection; make soak SOAK_CONNS=2000
# SOAK_BYTES=1048576 is the big run of docs/reliability.md. Prints TAP; run
# from the build directory.
conns=${SOAK_CONNS:-5000}
bytes=${SOAK_BYTES:-8192}
concurrency=${SOAK_CONCURRENCY:-100}
rounds=${SOAK_ROUNDS:-6}
slack=${SOAK_RSS_SLACK_KB:-4096}
server=${SOAK_SERVER:-examples/echo-server}
client=${SOAK_CLIENT:-tests/soak}
echo "TAP version 13"
[ -x "$server" ] && [ -x "$client" ] || { echo "1..0 # SKIP $server or $client not built"; exit 0; }
[ -d /proc/self/fd ] || { echo "1..0 # SKIP no /proc here"; exit 0; }
backends=${SOAK_BACKENDS:-$(tests/backends 2>/dev/null | tr ' ' '\n' | grep -E '^(io_uring|epoll)$')}
[ -n "$backends" ] || { echo "1..0 # SKIP neither io_uring nor epoll runs here"; exit 0; }

# Under AddressSanitizer freed memory sits in its quarantine: RSS says
# nothing about leaks there (LeakSanitizer does, in make check-faults).
check_rss=yes
case $(nm -D "$server" "$(dirname "$server")/.libs/$(basename "$server")" 2>/dev/null) in
*__asan_init*) check_rss=no ;;
esac
out=$(mktemp)
trap 'rm -f "$out"; [ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

i=0
failed=0
for backend in $backends; do
    # the real server binary, not libtool's wrapper script, so that $! is it
    bin=$server
    [ -x "$(dirname "$server")/.libs/$(basename "$server")" ] &&
        head -c 2 "$server" | grep -q '#!' && bin=$(dirname "$server")/.libs/$(basename "$server")
: >"$out" # empty before the server starts: the port is read from it
    LD_LIBRARY_PATH=$(pwd)/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} EDDY_BACKEND=$backend \
        "$bin" 0 >"$out" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 50); do
        port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    i=$((i + 1))
    if [ -z "$port" ]; then
        echo "not ok $i - [$backend] echo-server did not start"
        sed 's/^/# /' "$out"
        failed=$((failed + 1))
        kill "$pid" 2>/dev/null
        pid=
        continue
    fi
    rss0=$(rss "$pid")
    fds0=$(fds "$pid")
    start=$(date +%s)
    ok=yes
    r=1
    while [ $r -le "$rounds" ]; do
        line=$(EDDY_BACKEND=$backend "$client" "$port" "$conns" "$bytes" "$concurrency" 16 "$r" 2>&1) || ok=no
        echo "$line" | sed "s/^/# [$backend] round $r: /"
        [ $ok = yes ] || break
        if [ $r -eq 1 ]; then
            sleep 0.2 # let the server close what the client closed
            rss1=$(rss "$pid")
            fds1=$(fds "$pid")
        fi
        r=$((r + 1))
    done
    sleep 0.2
    rss2=$(rss "$pid")
    fds2=$(fds "$pid")
    secs=$(($(date +%s) - start))
    figures="RSS ${rss0} kB at start, ${rss1:-?} kB after round 1, ${rss2:-?} kB after round $rounds; descriptors $fds0, ${fds1:-?}, ${fds2:-?}; ${secs}s"
    echo "# [$backend] $figures"
    if [ $ok != yes ]; then
        echo "not ok $i - [$backend] $rounds rounds of $conns connections x $bytes bytes: a connection failed"
        failed=$((failed + 1))
    elif ! kill -0 "$pid" 2>/dev/null || [ -z "$rss2" ] || [ -z "$fds2" ]; then
        echo "not ok $i - [$backend] echo-server died"
        sed 's/^/# /' "$out"
        failed=$((failed + 1))
    elif [ "$fds2" -ne "$fds0" ] || [ "$fds1" -ne "$fds0" ]; then
        echo "not ok $i - [$backend] descriptors: $fds0 at start, $fds1 after round 1, $fds2 at the end"
        failed=$((failed + 1))
    elif [ $check_rss = yes ] && [ $((rss2 - rss1)) -gt "$slack" ]; then
        echo "not ok $i - [$backend] RSS grew by $((rss2 - rss1)) kB after the first round (limit $slack kB)"
        failed=$((failed + 1))
    else
        [ $check_rss = yes ] || figures="$figures (RSS not checked: AddressSanitizer build)"
        echo "ok $i - [$backend] $rounds rounds of $conns connections x $bytes bytes echoed intact; $figures"
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
done
echo "1..$i"
[ "$failed" -eq 0 ]
