#!/bin/sh
# bench/bench.sh: what `make bench` runs, from the build directory, once the
# programs of bench/ are built. Prints the figures as they come, then one table.
#
# Every figure is the median of $EDDY_BENCH_ROUNDS (default 3) rounds; in each
# round every contender runs once, in turn, so that a slow spell on this
# (shared) machine spreads over all of them instead of landing on one. Servers
# run on CPU 1, the load generator on CPU 0. Loopback only; every load is
# bounded in time ($EDDY_BENCH_SECONDS per round, default 2, after 0.5 s of
# warm-up) and in connections.
#
#   EDDY_BENCH_ONLY="tasks timers echo"   the sections to run (default: all)
set -u
srcdir=${srcdir:-.}
ROUNDS=${EDDY_BENCH_ROUNDS:-3}
SECS=${EDDY_BENCH_SECONDS:-2}
ONLY=${EDDY_BENCH_ONLY:-tasks timers echo}
SERVER_CPU=1
CLIENT_CPU=0
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: one CPU only: server and client share it" >&2
    SERVER_CPU=0
fi
out=$(mktemp -d /tmp/eddy-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
missing=""

# Raise the descriptor limit for the 1000-connection runs (children inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

median() { # median of the numbers on stdin, one per line
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- tasks --------------------------------------------------------------------
if want tasks; then
    echo "== tasks (bench/switch, bench/spawn; CPU $SERVER_CPU)"
    taskset -c "$SERVER_CPU" ./bench/switch | tee "$out/switch"
    taskset -c "$SERVER_CPU" ./bench/spawn | tee "$out/spawn"
fi

# ---- timers -------------------------------------------------------------------
if want timers; then
    echo "== timers: 1 000 000 timers, start+cancel and start+fire (ns per timer; CPU $SERVER_CPU)"
    libs="eddy"
    if ./bench/timers uv >/dev/null 2>&1; then libs="eddy uv"; else missing="$missing libuv"; fi
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for lib in $libs; do
            line=$(taskset -c "$SERVER_CPU" ./bench/timers "$lib") || line="- -"
            echo "  round $r $lib: $line"
            echo "$line" | awk '{ print $1 }' >>"$out/timer-cancel-$lib"
            echo "$line" | awk '{ print $2 }' >>"$out/timer-fire-$lib"
        done
        r=$((r + 1))
    done
fi

# ---- echo ---------------------------------------------------------------------
# name|command (PORT is replaced); a contender whose program is absent is left out.
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1; then PY=$p; break; fi
done
UVPY=""
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import uvloop' >/dev/null 2>&1; then UVPY=$p; break; fi
done
servers="eddy/io_uring|env EDDY_BACKEND=io_uring ./bench/echo-eddy PORT
eddy/epoll|env EDDY_BACKEND=epoll ./bench/echo-eddy PORT"
add_server() { servers="$servers
$1|$2"; }
# The floor for eddy on io_uring: a bare liburing loop, no tasks.
if [ -x ./bench/echo-uring ]; then add_server liburing "./bench/echo-uring PORT"; fi
if [ -x ./bench/echo-uv ]; then add_server libuv "./bench/echo-uv PORT"; else missing="$missing libuv"; fi
if [ -x ./bench/echo-ev ]; then add_server libev "./bench/echo-ev PORT"; else missing="$missing libev"; fi
if [ -x ./bench/echo-event ]; then
    add_server libevent "./bench/echo-event PORT"
else
    missing="$missing libevent"
fi
if [ -n "$PY" ]; then add_server asyncio "$PY $srcdir/bench/echo_asyncio.py PORT"; fi
if [ -n "$UVPY" ]; then
    add_server uvloop "$UVPY $srcdir/bench/echo_asyncio.py PORT uvloop"
else
    missing="$missing uvloop"
fi
CONFIGS="64:50 64:1000 16384:50 16384:1000"

key() { echo "$1" | tr '/' '_'; }

run_echo() { # name command size conns port
    cmd=$(echo "$2" | sed "s/PORT/$5/")
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPU" $cmd </dev/null >"$out/server.log" 2>&1 &
    pid=$!
    line=$(taskset -c "$CLIENT_CPU" ./bench/echo-load "$5" "$4" "$3" "$SECS" "$pid" </dev/null 2>"$out/load.log")
    status=$?
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ $status -ne 0 ] || [ -z "$line" ]; then
        echo "  $1 failed: $(cat "$out/load.log" "$out/server.log" | head -3 | tr '\n' ' ')" >&2
        line="- - -"
    fi
    echo "$line"
}

if want echo; then
    echo "== echo: TCP ping-pong on 127.0.0.1 (server CPU $SERVER_CPU, client CPU $CLIENT_CPU, ${SECS} s rounds)"
    # A port per run: an io_uring server's listener can outlive its process
    # for a moment (the ring is torn down asynchronously).
    port=20000
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for cfg in $CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            port=$((port + 16))
            echo "$servers" | {
                while IFS='|' read -r name cmd; do
                    port=$((port + 1))
                    line=$(run_echo "$name" "$cmd" "$size" "$conns" "$port")
                    echo "  round $r ${size} B x $conns conns  $(printf '%-14s' "$name") $line"
                    k=$(key "$name")
                    echo "$line" | awk '{ print $1 }' >>"$out/echo-$size-$conns-$k-rps"
                    echo "$line" | awk '{ print $2 }' >>"$out/echo-$size-$conns-$k-cpu"
                done
            }
        done
        r=$((r + 1))
    done
fi

# ---- the table ----------------------------------------------------------------
echo
echo "==== eddy benchmarks: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, Linux $(uname -r); median of $ROUNDS"
if want tasks && [ -s "$out/switch" ]; then
    echo
    echo "Tasks (thread CPU time, median of 5 inside each program)"
    grep -E 'raw fiber switch|eddy_yield round trip|timer pending|swapcontext round trip' "$out/switch"
    grep -E 'spawn\+join|spawn\+start\+sleep|resident memory,|page tables' "$out/spawn"
fi
if want timers; then
    echo
    echo "Timers: 1 000 000 timers (thread CPU ns per timer)"
    printf '  %-8s %16s %16s\n' "" "start+cancel" "start+fire"
    for lib in eddy uv; do
        [ -s "$out/timer-cancel-$lib" ] || continue
        c=$(median <"$out/timer-cancel-$lib")
        f=$(median <"$out/timer-fire-$lib")
        name=$lib
        [ "$lib" = uv ] && name=libuv
        printf '  %-8s %16s %16s\n' "$name" "$c" "$f"
        echo "$c" >"$out/timer-median-$lib"
    done
    c=$(cat "$out/timer-median-eddy" 2>/dev/null)
    if [ -n "$c" ] && [ "$c" != "-" ]; then
        verdict=$(awk -v c="$c" 'BEGIN { print (c <= 50 ? "met" : "MISSED") }')
        echo "  target: eddy start+cancel <= 50 ns: $verdict ($c ns)"
    fi
fi
if want echo; then
    echo
    echo "Echo: round trips/s and the server's CPU time per round trip (utime+stime, ns)"
    for cfg in $CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        uvcpu=$(median <"$out/echo-$size-$conns-libuv-cpu" 2>/dev/null)
        echo "  $size B messages, $conns connections"
        printf '    %-14s %12s %14s %10s\n' server "round trips/s" "CPU ns/trip" "vs libuv"
        echo "$servers" | while IFS='|' read -r name cmd; do
            k=$(key "$name")
            rps=$(median <"$out/echo-$size-$conns-$k-rps" 2>/dev/null)
            cpu=$(median <"$out/echo-$size-$conns-$k-cpu" 2>/dev/null)
            ratio=$(awk -v a="$cpu" -v b="${uvcpu:--}" \
                'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }')
            printf '    %-14s %12s %14s %10s\n' "$name" "${rps:--}" "${cpu:--}" "$ratio"
        done
    done
    if [ -x ./bench/echo-uring ]; then
        echo "  target: eddy/io_uring's CPU per round trip within 5 % of bare liburing's:"
        for cfg in $CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            base=$(median <"$out/echo-$size-$conns-liburing-cpu" 2>/dev/null)
            cpu=$(median <"$out/echo-$size-$conns-eddy_io_uring-cpu" 2>/dev/null)
            awk -v a="$cpu" -v u="${base:--}" -v n="    $size B x $conns" 'BEGIN {
                if (a + 0 > 0 && u + 0 > 0)
                    printf "%s: %s (%.2fx)\n", n, (a <= 1.05 * u ? "met" : "MISSED"), a / u
                else
                    printf "%s: no figure\n", n }'
        done
    fi
    echo "  target: eddy's CPU per round trip <= 0.6x libuv's:"
    for cfg in $CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        uvcpu=$(median <"$out/echo-$size-$conns-libuv-cpu" 2>/dev/null)
        for b in io_uring epoll; do
            cpu=$(median <"$out/echo-$size-$conns-eddy_$b-cpu" 2>/dev/null)
            awk -v a="$cpu" -v u="${uvcpu:--}" -v n="    eddy/$b, $size B x $conns" 'BEGIN {
                if (a + 0 > 0 && u + 0 > 0)
                    printf "%s: %s (%.2fx)\n", n, (a <= 0.6 * u ? "met" : "MISSED"), a / u
                else
                    printf "%s: no figure\n", n }'
        done
    done
fi
if [ -n "$missing" ]; then
    echo
    echo "Left out (not installed):$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
    echo "  run $srcdir/bench/install-peers.sh as root, then re-run configure and make bench"
fi
exit 0
