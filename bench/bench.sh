#!/bin/sh
# SPDX-License-Identifier: MIT
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
#   EDDY_BENCH_ONLY="tasks timers echo lines syscalls http http-threads loops files subprocess sendzc proxy sendfile tls"   the sections to run (default: all)
#   EDDY_BENCH_ECHO="eddy/io_uring eddy/epoll liburing" the echo servers to run (default: all)
#   EDDY_BENCH_FILES_DIR=DIR   where the files section puts its 1 GiB file (default: a
#                              temporary dir under /tmp, or /var/tmp where /tmp is a tmpfs,
#                              which has no O_DIRECT)
set -u
srcdir=${srcdir:-.}
ROUNDS=${EDDY_BENCH_ROUNDS:-3}
SECS=${EDDY_BENCH_SECONDS:-2}
ONLY=${EDDY_BENCH_ONLY:-tasks timers echo lines syscalls http http-threads loops files subprocess sendzc proxy sendfile tls}
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

# Prints "LABEL: met|MISSED (ratio)": met when VALUE <= LIMIT x BASE.
at_most() { # label value base limit
    awk -v n="$1" -v a="${2:--}" -v u="${3:--}" -v k="$4" 'BEGIN {
        if (a + 0 > 0 && u + 0 > 0)
            printf "%s: %s (%.2fx)\n", n, (a <= k * u ? "met" : "MISSED"), a / u
        else if (a + 0 > 0 && u == "0.0")
            printf "%s: MISSED (%s against 0: the base is below /proc'"'"'s resolution)\n", n, a
        else
            printf "%s: no figure\n", n }'
}

# The user/system split of a server's CPU time. The kernel's own split (utime
# and stime in /proc, and getrusage, which reads the same) samples at the tick
# (CONFIG_HZ, 250 here) where tick accounting is configured: a server kept 15 %
# busy by a client that saturates its own CPU gets about 75 ticks in a 2 s
# round, and a 1 % share of user time is less than one of them (the bare
# loops read 0). So the split is taken by perf's software clock instead,
# sampling the server's own running time at $PERF_HZ (about 6 000 samples a
# round, the same for every server); the total stays the kernel's.
PERF_HZ=20000
PERF=""
if command -v perf >/dev/null 2>&1 && perf record -q -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
    PERF=perf
else
    missing="$missing perf(user/system split from /proc's ticks instead)"
fi
perf_start() { # pid seconds: samples pid's running time for that long, in the background
    [ -n "$PERF" ] || return 0
    rm -f "$out/perf.data"
    perf_pid=""
    taskset -c "$CLIENT_CPU" perf record -q -e cpu-clock -F "$PERF_HZ" -p "$1" \
        -o "$out/perf.data" -- sleep "$2" </dev/null >/dev/null 2>&1 &
    perf_pid=$!
}
perf_wait() { # for the sampling perf_start began (in this shell, not in a $(...))
    [ -n "${perf_pid:-}" ] && wait "$perf_pid" 2>/dev/null
    perf_pid=""
}
perf_user_share() { # after perf_wait: the share of the samples in user space (0..1), or "-"
    [ -n "$PERF" ] && [ -s "$out/perf.data" ] || { echo -; return; }
    perf script -i "$out/perf.data" -F ip 2>/dev/null | awk '
        { if (length($1) >= 16 && substr($1, 1, 4) == "ffff") k++; else u++ }
        END { if (u + k >= 100) printf "%.5f\n", u / (u + k); else print "-" }'
}
# "rps cpu trips user sys" with user and sys from the share (when there is one)
split_line() { # line share
    echo "$1" | awk -v f="$2" '{ if (f != "-" && $2 + 0 > 0) { $4 = sprintf("%.1f", $2 * f); $5 = sprintf("%.1f", $2 - $2 * f) } print }'
}

# ---- tasks --------------------------------------------------------------------
if want tasks; then
    echo "== tasks (bench/switch, bench/spawn; CPU $SERVER_CPU)"
    taskset -c "$SERVER_CPU" ./bench/switch | tee "$out/switch"
    taskset -c "$SERVER_CPU" ./bench/spawn | tee "$out/spawn"
    taskset -c "$SERVER_CPU" ./bench/sync "$srcdir" | tee "$out/sync"
fi

# ---- loops --------------------------------------------------------------------
# bench/loops: round trips and channel throughput between two loops on two
# threads pinned to the first two CPUs, beside pipe and eventfd ping-pongs
# between two plain threads, in alternating rounds inside the program.
# Then again with both threads on CPU $SERVER_CPU: no wake crosses CPUs, so
# what is left is the software path of each kind of wake.
if want loops; then
    echo "== loops (bench/loops, $((ROUNDS * 2 + 1)) rounds; then both threads on CPU $SERVER_CPU)"
    ./bench/loops "$((ROUNDS * 2 + 1))" 5000 200000 | tee "$out/loops"
    taskset -c "$SERVER_CPU" ./bench/loops "$((ROUNDS * 2 + 1))" 20000 500000 | tee "$out/loops-one-cpu"
fi

# ---- timers -------------------------------------------------------------------
if want timers; then
    echo "== timers: 1 000 000 timers, start+cancel and start+fire (ns per timer; CPU $SERVER_CPU)"
    libs="eddy"
    if ./bench/timers uv >/dev/null 2>&1; then libs="eddy uv"; else missing="$missing libuv"; fi
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for lib in $libs; do
            line=$(taskset -c "$SERVER_CPU" ./bench/timers "$lib") || line="- - -"
            echo "  round $r $lib: $line"
            echo "$line" | awk '{ print $1 }' >>"$out/timer-cancel-$lib"
            echo "$line" | awk '{ print $2 }' >>"$out/timer-fire-$lib"
            echo "$line" | awk '{ print $3 }' >>"$out/timer-cold-$lib"
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
# The floor for eddy on epoll: a bare level-triggered epoll loop.
if [ -x ./bench/echo-epoll ]; then add_server epoll "./bench/echo-epoll PORT"; fi
# The floors for eddy on io_uring: bare liburing loops, no tasks; one with a
# plain recv per message, one with a multishot recv into a buffer ring and a
# multishot accept, as eddy's backend does. eddy is compared with the better.
if [ -x ./bench/echo-uring ]; then add_server liburing "./bench/echo-uring PORT"; fi
if [ -x ./bench/echo-uring-multishot ]; then
    add_server liburing-multishot "./bench/echo-uring-multishot PORT"
fi
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
if [ -n "${EDDY_BENCH_ECHO:-}" ]; then
    servers=$(echo "$servers" | while IFS='|' read -r name cmd; do
        case " $EDDY_BENCH_ECHO " in *" $name "*) echo "$name|$cmd" ;; esac
    done)
fi
CONFIGS="64:50 64:1000 64:10000 16384:50 16384:1000"

key() { echo "$1" | tr '/' '_'; }

keep() { # line prefix column:suffix...: appends each column of line to $out/prefix-suffix
    l=$1
    p=$2
    shift 2
    for cs in "$@"; do
        echo "$l" | awk -v c="${cs%%:*}" '{ print $c }' >>"$out/$p-${cs#*:}"
    done
}

run_echo() { # name command size conns port
    cmd=$(echo "$2" | sed "s/PORT/$5/")
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPU" $cmd </dev/null >"$out/server.log" 2>&1 &
    pid=$!
    taskset -c "$CLIENT_CPU" ./bench/echo-load "$5" "$4" "$3" "$SECS" "$pid" </dev/null \
        >"$out/load.out" 2>"$out/load.log" &
    lpid=$!
    # the split is sampled in the measured window: after the connections and
    # the warm-up (echo-load says when it starts measuring)
    i=0
    while ! grep -q measuring "$out/load.log" 2>/dev/null && [ $i -lt 600 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    perf_start "$pid" "$SECS"
    wait "$lpid"
    status=$?
    perf_wait
    share=$(perf_user_share)
    line=$(cat "$out/load.out")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ $status -ne 0 ] || [ -z "$line" ]; then
        echo "  $1 failed: $(grep -v measuring "$out/load.log" "$out/server.log" | head -3 | tr '\n' ' ')" >&2
        line="- - - - -"
    fi
    split_line "$line" "$share"
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
                    echo "  round $r ${size} B x $conns conns  $(printf '%-18s' "$name") $line"
                    keep "$line" "echo-$size-$conns-$(key "$name")" 1:rps 2:cpu 4:user 5:sys
                done
            }
        done
        r=$((r + 1))
    done
fi

# ---- lines ----------------------------------------------------------------------
# Line echo over streams: bench/lines-eddy (readline, write, drain on eddy
# streams) against the same server on asyncio streams (and uvloop), driven by
# echo-load, whose messages are lines. eddy/io_uring reads lines from the
# loop's buffer ring without copying them into the stream; uring-noring
# is the same binary with the ring off (plain receives into the stream).
LINE_CONFIGS="64:50 64:1000 1024:50"
line_servers="eddy/io_uring|env EDDY_BACKEND=io_uring ./bench/lines-eddy PORT
uring-noring|env EDDY_BACKEND=io_uring EDDY_CAPS_DISABLE=buffer_ring ./bench/lines-eddy PORT
eddy/epoll|env EDDY_BACKEND=epoll ./bench/lines-eddy PORT"
if [ -n "$PY" ]; then line_servers="$line_servers
asyncio|$PY $srcdir/bench/lines_asyncio.py PORT"; fi
if [ -n "$UVPY" ]; then line_servers="$line_servers
uvloop|$UVPY $srcdir/bench/lines_asyncio.py PORT uvloop"; fi
if want lines; then
    echo "== lines: line echo over streams on 127.0.0.1 (server CPU $SERVER_CPU, client CPU $CLIENT_CPU, ${SECS} s rounds)"
    port=23000
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for cfg in $LINE_CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            port=$((port + 16))
            echo "$line_servers" | {
                while IFS='|' read -r name cmd; do
                    port=$((port + 1))
                    line=$(run_echo "$name" "$cmd" "$size" "$conns" "$port")
                    echo "  round $r ${size} B lines x $conns conns  $(printf '%-14s' "$name") $line"
                    k=$(key "$name")
                    echo "$line" | awk '{ print $1 }' >>"$out/lines-$size-$conns-$k-rps"
                    echo "$line" | awk '{ print $2 }' >>"$out/lines-$size-$conns-$k-cpu"
                done
            }
        done
        r=$((r + 1))
    done
fi

# ---- syscalls per round trip --------------------------------------------------
# A separate, shorter run per server under strace -c -f (which slows the
# servers that make many calls, and so changes how much one epoll_wait or
# io_uring_enter gathers; the receives and sends per trip it does not):
# echo-load in its exact mode counts every round trip from the first message,
# drains, and kills the server before a connection closes.
child_pid() { # pid: its child (the traced server) once that has exec'd; "" after 5 s
    # strace forks short-lived children of its own first, to probe what ptrace
    # offers: a child still named strace may be one of those, and killing it
    # instead of the server left the run waiting for a server that never ended.
    i=0
    while [ $i -lt 100 ]; do
        for c in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
            comm=$(cat "/proc/$c/comm" 2>/dev/null)
            if [ -n "$comm" ] && [ "$comm" != strace ]; then
                echo "$c"
                return
            fi
        done
        sleep 0.05
        i=$((i + 1))
    done
}
end_traced() { # strace-pid server-pid name: ends the server, waits at most 10 s for strace
    [ -n "$2" ] && kill "$2" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
        [ $i = 50 ] && [ -n "$2" ] && kill -9 "$2" 2>/dev/null
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        echo "  $3: the traced server did not end; strace and its children killed" >&2
        pkill -9 -P "$1" 2>/dev/null
        kill -9 "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
}

SYSCALL_CONFIGS="64:50 64:1000"
SYSCALL_SERVERS="eddy/io_uring eddy/epoll epoll liburing liburing-multishot libuv"
syscall_servers=""
if want syscalls; then
    if ! command -v strace >/dev/null 2>&1; then
        missing="$missing strace"
    else
        syscall_servers=$(echo "$servers" | while IFS='|' read -r name cmd; do
            case " $SYSCALL_SERVERS " in *" $name "*) echo "$name|$cmd" ;; esac
        done)
        echo "== syscalls: strace -c -f on each server, 1 s of 64 B echo (server CPU $SERVER_CPU)"
        for cfg in $SYSCALL_CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            port=$((22000 + conns)) # the loop below runs in a subshell
            echo "$syscall_servers" | while IFS='|' read -r name cmd; do
                port=$((port + 1))
                cmd=$(echo "$cmd" | sed "s/PORT/$port/")
                k=$(key "$name")
                # shellcheck disable=SC2086
                taskset -c "$SERVER_CPU" strace -f -c -o "$out/strace" $cmd \
                    </dev/null >"$out/server.log" 2>&1 &
                spid=$!
                srv=$(child_pid "$spid")
                line=$(ECHO_LOAD_EXACT=1 taskset -c "$CLIENT_CPU" ./bench/echo-load "$port" \
                    "$conns" "$size" 1 "${srv:-0}" </dev/null 2>"$out/load.log")
                end_traced "$spid" "$srv" "$name"
                trips=$(echo "$line" | awk '{ print $3 }')
                if [ -z "$trips" ] || [ "$trips" = 0 ] || ! [ -s "$out/strace" ]; then
                    echo "  $name failed: $(head -2 "$out/load.log" | tr '\n' ' ')" >&2
                    continue
                fi
                # calls is the 4th column, the name the last ("errors" may be empty)
                echo "$trips" >"$out/sys-$size-$conns-$k-trips"
                awk -v t="$trips" '$NF != "total" && $NF != "syscall" && $4 ~ /^[0-9]+$/ {
                        printf "%s %.3f\n", $NF, $4 / t; all += $4 }
                    END { printf "total %.3f\n", all / t }' "$out/strace" |
                    sort -k2,2gr >"$out/sys-$size-$conns-$k"
                echo "  $size B x $conns conns  $(printf '%-18s' "$name") $trips trips:" \
                    "$(awk '$2 >= 0.01 { printf "%s %s  ", $1, $2 }' "$out/sys-$size-$conns-$k")"
            done
        done
        # 1000 connections closing at once: their tasks end together. The
        # munmap calls from then until 0.5 s later (the stack pool's decay
        # gives memory back only after more than a second of idleness).
        port=22500
        for b in io_uring epoll; do
            port=$((port + 1))
            taskset -c "$SERVER_CPU" env EDDY_BACKEND=$b strace -f -c -e trace=munmap \
                -o "$out/strace" ./bench/echo-eddy "$port" </dev/null >"$out/server.log" 2>&1 &
            spid=$!
            srv=$(child_pid "$spid")
            # the munmaps before the close (startup): none expected
            taskset -c "$CLIENT_CPU" ./bench/echo-load "$port" 1000 64 1 "${srv:-0}" \
                </dev/null >/dev/null 2>"$out/load.log"
            sleep 0.5
            end_traced "$spid" "$srv" "eddy/$b"
            n=$(awk '$NF == "munmap" { print $4 }' "$out/strace")
            echo "${n:-0}" >"$out/teardown-$b"
            echo "  1000 connections closing, eddy/$b: ${n:-0} munmap calls"
        done
    fi
fi

# ---- http ---------------------------------------------------------------------
# wrk (CPU 0) against examples/http-hello on each backend and against nginx
# with one worker process (CPU 1, its own prefix and config under $out), both
# answering every request with the same "Hello, World!" and the same headers.
HTTP_CONNS="50 1000"
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
NGINX=""
for p in /usr/sbin/nginx nginx; do
    if command -v "$p" >/dev/null 2>&1; then NGINX=$p; break; fi
done

cpu_split() { # pids -> "utime stime" summed over them (all their threads), in clock ticks
    for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
        awk '{ sub(/^.*\) /, ""); u += $12; s += $13 } END { print u + 0, s + 0 }'
}

cpu_ticks() { # utime + stime of a process (all its threads), in clock ticks
    cpu_split "$1" | awk '{ print $1 + $2 }'
}

listening() { # port: true once something listens on 127.0.0.1:port
    awk -v p="$(printf '0100007F:%04X' "$1")" '$2 == p && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp
}

nginx_conf() { # port [workers] -> $out/nginx/nginx.conf
    mkdir -p "$out/nginx"
    # Several workers as eddy's several loops: each pinned to a CPU, each
    # with a SO_REUSEPORT listener of its own.
    affinity="" reuseport=""
    if [ "${2:-1}" -gt 1 ]; then affinity="worker_cpu_affinity auto;" reuseport=" reuseport"; fi
    cat >"$out/nginx/nginx.conf" <<EOF
worker_processes ${2:-1};
$affinity
daemon off;
pid $out/nginx/nginx.pid;
error_log $out/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    default_type text/plain;
    keepalive_requests 100000000;
    client_body_temp_path $out/nginx/body;
    proxy_temp_path $out/nginx/proxy;
    fastcgi_temp_path $out/nginx/fastcgi;
    uwsgi_temp_path $out/nginx/uwsgi;
    scgi_temp_path $out/nginx/scgi;
    server {
        listen 127.0.0.1:$1$reuseport;
        location / { return 200 "Hello, World!"; }
    }
}
EOF
}

# With workers > 1 (http-hello --threads N, nginx's worker_processes N) the
# server and wrk -tN share every CPU of ALL_CPUS, as on a machine with no
# spare core for the load; the CPU time is summed over the server's processes.
ALL_CPUS=$CLIENT_CPU
[ "$SERVER_CPU" != "$CLIENT_CPU" ] && ALL_CPUS="$CLIENT_CPU,$SERVER_CPU"
run_http() { # name conns port [workers] -> "requests/s CPU-ns-per-request user-ns sys-ns"
    workers=${4:-1}
    scpus=$SERVER_CPU wcpus=$CLIENT_CPU targ=""
    if [ "$workers" -gt 1 ]; then scpus=$ALL_CPUS wcpus=$ALL_CPUS targ="--threads $workers"; fi
    if [ "$1" = nginx ]; then
        nginx_conf "$3" "$workers"
        taskset -c "$scpus" "$NGINX" -p "$out/nginx" -c "$out/nginx/nginx.conf" \
            </dev/null >"$out/server.log" 2>&1 &
    else
        taskset -c "$scpus" env EDDY_BACKEND="${1#eddy/}" ./examples/http-hello $targ "$3" \
            </dev/null >"$out/server.log" 2>&1 &
    fi
    spid=$!
    # the processes that serve: nginx's master and its workers
    pids=$spid
    i=0
    while [ $i -lt 50 ]; do
        if [ "$1" = nginx ]; then
            w=$(cat /proc/$spid/task/*/children 2>/dev/null)
            [ "$(echo $w | wc -w)" -ge "$workers" ] && pids="$spid $w"
        fi
        if { [ "$1" != nginx ] || [ "$pids" != "$spid" ]; } && listening "$3"; then break; fi
        sleep 0.1
        i=$((i + 1))
    done
    t0=$(cpu_split $pids)
    perf_start "$(echo $pids | tr ' ' ',')" "$SECS"
    res=$(taskset -c "$wcpus" wrk -t"$workers" -c"$2" -d"${SECS}s" "http://127.0.0.1:$3/" 2>&1)
    t1=$(cpu_split $pids)
    perf_wait
    share=$(perf_user_share)
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    # requests/s, CPU ns per request, and its user and system parts (perf's
    # split of the total; without perf, the kernel's tick split)
    line=$(echo "$res" | awk -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v f="$share" '
        BEGIN { split(t0, a, " "); split(t1, b, " "); u = b[1] - a[1]; s = b[2] - a[2] }
        / requests in / { n = $1 }
        /^Requests\/sec:/ { r = $2 }
        /Non-2xx|Socket errors/ { bad = 1 }
        END { k = n > 0 ? 1e9 / hz / n : 0; c = (u + s) * k
              if (n > 0 && !bad) {
                  if (f == "-") printf "%.0f %.0f %.0f %.0f\n", r, c, u * k, s * k
                  else printf "%.0f %.0f %.0f %.0f\n", r, c, c * f, c - c * f }
              else print "- - - -" }')
    if [ "$line" = "- - - -" ]; then
        echo "  $1 failed: $(echo "$res" | tail -3 | tr '\n' ' ') $(head -2 "$out/server.log" | tr '\n' ' ')" >&2
    fi
    echo "$line"
}

http_rounds() { # prefix first-port workers servers: $ROUNDS rounds of each server at each $HTTP_CONNS
    port=$2
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for conns in $HTTP_CONNS; do
            for name in $4; do
                port=$((port + 1))
                line=$(run_http "$name" "$conns" "$port" "$3")
                echo "  round $r $conns conns  $(printf '%-14s' "$name") $line"
                k=$(key "$name")
                i=1
                for f in rps cpu usr sys; do
                    echo "$line" | awk -v i=$i '{ print $i }' >>"$out/$1-$conns-$k-$f"
                    i=$((i + 1))
                done
            done
        done
        r=$((r + 1))
    done
}

# Sets $servers_here to the HTTP servers there are to run ("" without wrk);
# what is missing goes to $missing.
http_servers_here() {
    servers_here=""
    if ! command -v wrk >/dev/null 2>&1 || ! [ -x ./examples/http-hello ]; then
        missing="$missing wrk"
        return
    fi
    servers_here="eddy/io_uring eddy/epoll"
    if [ -n "$NGINX" ]; then servers_here="$servers_here nginx"; else missing="$missing nginx"; fi
}

http_servers=""
if want http; then
    http_servers_here
    http_servers=$servers_here
    if [ -n "$http_servers" ]; then
        echo "== http: wrk -t1 against examples/http-hello and nginx (1 worker) on 127.0.0.1 (server CPU $SERVER_CPU, wrk CPU $CLIENT_CPU, ${SECS} s rounds)"
        http_rounds http 21000 1 "$http_servers"
    fi
fi

# ---- http-threads -------------------------------------------------------------
# The same with two loops against two nginx workers: http-hello --threads 2
# (two loops, a SO_REUSEPORT listener each) and worker_processes 2, server
# and wrk -t2 sharing CPUs $ALL_CPUS; CPU per request split into user and
# system time.
http2_servers=""
if want http-threads; then
    http_servers_here
    http2_servers=$servers_here
    if [ -n "$http2_servers" ]; then
        echo "== http-threads: wrk -t2 against http-hello --threads 2 and nginx (2 workers), all on CPUs $ALL_CPUS (${SECS} s rounds)"
        http_rounds http2 22000 2 "$http2_servers"
    fi
fi

# ---- tls ----------------------------------------------------------------------
# TLS echo: one connection, one message in flight, 1 KiB and 64 KiB lines
# (bench/tls-echo load, CPU 0) against bench/tls-echo server on each backend
# and `openssl s_server -rev` (CPU 1; it answers each line reversed, the same
# bytes, in pieces of at most 16 KiB). The figure: the server's CPU time
# (utime+stime) per KiB echoed. Certificates made here with openssl.
TLS_SIZES="1024 65536"
tls_servers=""
if want tls && ./bench/tls-echo 2>/dev/null; [ $? -eq 2 ] && command -v openssl >/dev/null 2>&1; then
    tls_servers="eddy/io_uring|env EDDY_BACKEND=io_uring ./bench/tls-echo server PORT $out/tls/server.pem $out/tls/server.key
eddy/epoll|env EDDY_BACKEND=epoll ./bench/tls-echo server PORT $out/tls/server.pem $out/tls/server.key
openssl|openssl s_server -quiet -rev -accept 127.0.0.1:PORT -cert $out/tls/server.pem -key $out/tls/server.key"
    mkdir -p "$out/tls"
    (
        cd "$out/tls" || exit 1
        K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
        openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=eddy-bench-ca &&
            openssl req $K -keyout server.key -out server.csr -subj /CN=localhost &&
            printf 'subjectAltName=DNS:localhost\n' >san.ext &&
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile san.ext -out server.pem
    ) >/dev/null 2>&1 || tls_servers=""
fi
run_tls() { # command size port -> "messages/s CPU-ns-per-KiB"
    cmd=$(echo "$1" | sed "s/PORT/$3/")
    taskset -c "$SERVER_CPU" $cmd >/dev/null 2>&1 </dev/null &
    pid=$!
    i=0
    while ! listening "$3" && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    t0=$(cpu_ticks "$pid")
    res=$(taskset -c "$CLIENT_CPU" ./bench/tls-echo load "$3" "$out/tls/ca.pem" "$2" "$SECS" 2>/dev/null)
    t1=$(cpu_ticks "$pid")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "$res" | awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v s="$SECS" '
        NF == 2 && $2 > 0 { printf "%s %.1f\n", $1, (t1 - t0) / hz * 1e9 / ($2 / 1024) * s / (s + 0.5); f = 1 }
        END { if (!f) print "- -" }'
}
if [ -n "$tls_servers" ]; then
    echo "== tls: TLS echo, one connection (server CPU $SERVER_CPU, client CPU $CLIENT_CPU, ${SECS} s rounds)"
    port=23500
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for size in $TLS_SIZES; do
            echo "$tls_servers" | {
                while IFS='|' read -r name cmd; do
                    port=$((port + 1))
                    line=$(run_tls "$cmd" "$size" "$port")
                    echo "  round $r ${size} B x 1 conn  $(printf '%-14s' "$name") $line"
                    k=$(key "$name")
                    echo "$line" | awk '{ print $1 }' >>"$out/tls-$size-$k-rps"
                    echo "$line" | awk '{ print $2 }' >>"$out/tls-$size-$k-cpu"
                done
            }
            port=$((port + 8))
        done
        r=$((r + 1))
    done
elif want tls; then
    missing="$missing tls-echo(built-with-OpenSSL)/openssl"
fi

# ---- files --------------------------------------------------------------------
# 4 KiB random reads at queue depth 32 over a 1 GiB file (in $out, or in
# $EDDY_BENCH_FILES_DIR: see docs/performance.md for a RAM-backed disk; removed
# at exit), through the page cache and with O_DIRECT: bench/files (eddy on
# each backend, libuv) and fio's io_uring engine, all on CPU $SERVER_CPU.
files_libs=""
if want files; then
    fdir=${EDDY_BENCH_FILES_DIR:-$out}
    if [ -z "${EDDY_BENCH_FILES_DIR:-}" ] && [ "$(stat -f -c %T "$out")" = tmpfs ]; then
        fdir=$(mktemp -d /var/tmp/eddy-bench.XXXXXX) # tmpfs has no O_DIRECT
        trap 'rm -rf "$out" "$fdir"' EXIT
    fi
    fdat="$fdir/eddy-bench-files.dat"
    [ "$fdir" = "$out" ] || trap 'rm -rf "$out" "$fdat"' EXIT
    avail=$(df -Pk "$fdir" | awk 'NR == 2 { print $4 }')
    if [ "${avail:-0}" -lt 1100000 ]; then
        echo "== files: left out, less than 1.1 GiB free under $fdir" >&2
    elif ! [ -x ./bench/files ]; then
        echo "== files: left out, bench/files not built" >&2
    else
        # written, not only allocated: reads of unwritten extents touch no disk
        fallocate -l 1G "$fdat" 2>/dev/null || true
        dd if=/dev/zero of="$fdat" bs=1M count=1024 conv=notrunc status=none
        sync
        # eddy/io_uring-unreg: the same with registered files off (the file's
        # reads name its descriptor), for the difference they make; eddy-fixed:
        # its buffers registered too (READ_FIXED), beside fio-fixed
        files_libs="eddy/io_uring eddy/io_uring-unreg eddy-fixed eddy/epoll"
        if ./bench/files uv "$fdat" 0 0 >/dev/null 2>&1; then
            files_libs="$files_libs libuv"
        else
            missing="$missing libuv"
        fi
        # fio: its default (one io_uring_enter per read), batched (up to 32
        # submissions per enter, and as many completions as are there), and
        # batched at its best: registered file and buffers as well
        if command -v fio >/dev/null 2>&1; then
            files_libs="$files_libs fio fio-batched fio-fixed"
        else
            missing="$missing fio"
        fi
        fsinfo="$fdir on $(stat -f -c %T "$fdir") ($(df -P "$fdir" | awk 'NR == 2 { print $1 }'))"
        echo "== files: 4 KiB random reads, queue depth 32, 1 GiB file in $fsinfo"
        echo "   (IOPS and CPU ns per read; CPU $SERVER_CPU, ${SECS} s rounds)"
        r=1
        while [ "$r" -le "$ROUNDS" ]; do
            for mode in cache direct; do
                d=0
                [ "$mode" = direct ] && d=1
                for name in $files_libs; do
                    # page cache runs start from a fully cached file
                    [ $d = 0 ] && cat "$fdat" >/dev/null
                    case "$name" in
                    eddy/io_uring-unreg)
                        line=$(taskset -c "$SERVER_CPU" env EDDY_BACKEND=io_uring \
                            EDDY_CAPS_DISABLE=registered_files \
                            ./bench/files eddy "$fdat" $d "$SECS" 2>"$out/files.log") ;;
                    eddy-fixed)
                        line=$(taskset -c "$SERVER_CPU" env EDDY_BACKEND=io_uring \
                            ./bench/files eddy "$fdat" $d "$SECS" 1 2>"$out/files.log") ;;
                    eddy/*)
                        line=$(taskset -c "$SERVER_CPU" env EDDY_BACKEND="${name#eddy/}" \
                            ./bench/files eddy "$fdat" $d "$SECS" 2>"$out/files.log") ;;
                    libuv) line=$(taskset -c "$SERVER_CPU" ./bench/files uv "$fdat" $d "$SECS" 2>"$out/files.log") ;;
                    fio*)
                        batch=""
                        [ "$name" != fio ] && batch="--iodepth_batch_submit=32 \
                            --iodepth_batch_complete_min=1 --iodepth_batch_complete_max=32"
                        [ "$name" = fio-fixed ] && batch="$batch --registerfiles --fixedbufs"
                        # invalidate=0: fio would drop the page cache first.
                        # Terse v3: field 8 is read IOPS, 88 and 89 user and
                        # system CPU in % of the run.
                        # shellcheck disable=SC2086
                        line=$(taskset -c "$SERVER_CPU" fio --name=r --filename="$fdat" --rw=randread \
                            --bs=4k --iodepth=32 --ioengine=io_uring --direct=$d --invalidate=0 $batch \
                            --ramp_time=500ms --runtime="$SECS" --time_based --output-format=terse \
                            --terse-version=3 2>"$out/files.log" | awk -F';' '$8 > 0 {
                                u = $88; s = $89; sub(/%/, "", u); sub(/%/, "", s)
                                printf "%d %.0f\n", $8, (u + s) / 100 * 1e9 / $8 }') ;;
                    esac
                    [ -n "$line" ] || { line="- -"; echo "  $name failed: $(head -2 "$out/files.log")" >&2; }
                    echo "  round $r $mode $(printf '%-14s' "$name") $line"
                    echo "$line" | awk '{ print $1 }' >>"$out/files-$mode-$(key "$name")"
                    echo "$line" | awk '{ print $2 }' >>"$out/files-cpu-$mode-$(key "$name")"
                done
            done
            r=$((r + 1))
        done
        rm -f "$fdat"
    fi
fi

# ---- subprocess -----------------------------------------------------------------
# spawn+wait of /bin/true per second, the parent at 10 MiB and at 2 GiB
# resident: eddy (on each Linux backend), libuv's uv_spawn, asyncio.
SUB_SIZES="10 2048"
sub_libs=""
if want subprocess; then
    echo "== subprocess: spawn+wait of /bin/true per second ($SECS s per run, CPU $SERVER_CPU)"
    sub_libs="eddy/io_uring eddy/epoll"
    if ./bench/subprocess uv 1 0.01 >/dev/null 2>&1; then sub_libs="$sub_libs libuv"; else missing="$missing libuv"; fi
    if [ -n "$PY" ]; then sub_libs="$sub_libs asyncio"; else missing="$missing python3"; fi
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for mib in $SUB_SIZES; do
            for name in $sub_libs; do
                case $name in
                eddy/*) cmd="env EDDY_BACKEND=${name#eddy/} ./bench/subprocess eddy $mib $SECS" ;;
                libuv) cmd="./bench/subprocess uv $mib $SECS" ;;
                asyncio) cmd="$PY $srcdir/bench/subprocess_asyncio.py $mib $SECS" ;;
                esac
                line=$(taskset -c "$SERVER_CPU" $cmd 2>/dev/null) || line="- -"
                echo "  round $r ${mib} MiB $(printf '%-14s' "$name") $line"
                echo "$line" | awk '{ print $1 }' >>"$out/sub-$mib-$(key "$name")"
            done
        done
        r=$((r + 1))
    done
fi

# ---- zero-copy sends ----------------------------------------------------------
if want sendzc && [ -x ./bench/send-zc ]; then
    echo "== sendzc: bench/send-zc, copying and zero-copy eddy_send over loopback (CPU $SERVER_CPU)"
    taskset -c "$SERVER_CPU" ./bench/send-zc | tee "$out/sendzc"
fi

# ---- proxy and sendfile -------------------------------------------------------
# proxy: bulk throughput from bench/pump send (CPU $CLIENT_CPU) to bench/pump
# sink, directly and through examples/proxy (CPU $SERVER_CPU) on each backend,
# spliced and copied (-c), in the same round. sendfile: a 256 MiB cached file
# to bench/pump sink, eddy_stream_sendfile against a read/write loop.
proxy_kinds=""
sendfile_kinds=""
if { want proxy || want sendfile; } && [ -x ./bench/pump ]; then
    ./bench/pump sink >"$out/sink.port" 2>/dev/null &
    sink_pid=$!
    i=0
    while [ $i -lt 50 ] && ! [ -s "$out/sink.port" ]; do sleep 0.1; i=$((i + 1)); done
    sink_port=$(cat "$out/sink.port")
    if want proxy && [ -x ./examples/proxy ]; then
        proxy_kinds="direct io_uring/splice io_uring/copy epoll/splice epoll/copy"
        echo "== proxy: bench/pump through examples/proxy vs direct (Gbit/s; proxy CPU $SERVER_CPU, ${SECS} s rounds)"
        r=1
        while [ "$r" -le "$ROUNDS" ]; do
            for kind in $proxy_kinds; do
                if [ "$kind" = direct ]; then
                    p=$sink_port
                else
                    flag=""
                    [ "${kind#*/}" = copy ] && flag=-c
                    taskset -c "$SERVER_CPU" env EDDY_BACKEND="${kind%/*}" ./examples/proxy $flag 0 \
                        127.0.0.1 "$sink_port" >"$out/proxy.out" 2>&1 &
                    ppid=$!
                    i=0
                    while [ $i -lt 100 ] && ! grep -q listening "$out/proxy.out"; do sleep 0.1; i=$((i + 1)); done
                    p=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$out/proxy.out")
                fi
                g=$(taskset -c "$CLIENT_CPU" ./bench/pump send "$p" "$SECS" | awk '{ print $1 }')
                [ "$kind" = direct ] || { kill "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null; }
                echo "  round $r $(printf '%-16s' "$kind") ${g:--}"
                echo "${g:--}" >>"$out/proxy-$(key "$kind")"
            done
            r=$((r + 1))
        done
    fi
    if want sendfile && [ -x ./bench/sendfile ]; then
        sendfile_kinds="io_uring/sendfile io_uring/copy epoll/sendfile epoll/copy"
        head -c 268435456 /dev/zero >"$out/sendfile.dat"
        echo "== sendfile: a 256 MiB cached file onto a stream (Gbit/s, CPU ns per MiB; CPU $SERVER_CPU, ${SECS} s rounds)"
        r=1
        while [ "$r" -le "$ROUNDS" ]; do
            for kind in $sendfile_kinds; do
                cat "$out/sendfile.dat" >/dev/null
                line=$(taskset -c "$SERVER_CPU" env EDDY_BACKEND="${kind%/*}" ./bench/sendfile \
                    "$sink_port" "$out/sendfile.dat" "${kind#*/}" "$SECS" 2>"$out/sendfile.log") || line="- -"
                echo "  round $r $(printf '%-18s' "$kind") $line"
                echo "$line" | awk '{ print $1 }' >>"$out/sendfile-$(key "$kind")-gbit"
                echo "$line" | awk '{ print $2 }' >>"$out/sendfile-$(key "$kind")-cpu"
            done
            r=$((r + 1))
        done
        rm -f "$out/sendfile.dat"
    fi
    kill "$sink_pid" 2>/dev/null
    wait "$sink_pid" 2>/dev/null
fi

# ---- the table ----------------------------------------------------------------
# The medians of http_rounds' figures, per connection count: requests/s, CPU
# ns per request (and its user and system parts), and the CPU as a ratio of
# nginx's.
http_table() { # prefix servers
    for conns in $HTTP_CONNS; do
        ngcpu=$( { median <"$out/$1-$conns-nginx-cpu"; } 2>/dev/null)
        echo "  $conns connections"
        printf '    %-14s %12s %14s %10s %10s %10s\n' server "requests/s" "CPU ns/req" "user" "sys" "vs nginx"
        for name in $2; do
            k=$(key "$name")
            for f in rps cpu usr sys; do
                eval "$f=\$( { median <\"\$out/\$1-\$conns-\$k-$f\"; } 2>/dev/null)"
            done
            ratio=$(awk -v a="$cpu" -v b="${ngcpu:--}" \
                'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }')
            printf '    %-14s %12s %14s %10s %10s %10s\n' "$name" "${rps:--}" "${cpu:--}" "${usr:--}" "${sys:--}" "$ratio"
        done
    done
}

# A row per server of a "name|command" list: the medians of $out/PREFIX-KEY-rps
# and -cpu, and the CPU time as a ratio of BASE's.
rows() { # servers prefix base
    base=$( { median <"$out/$2-$3-cpu"; } 2>/dev/null)
    echo "$1" | while IFS='|' read -r name cmd; do
        k=$(key "$name")
        rps=$( { median <"$out/$2-$k-rps"; } 2>/dev/null)
        cpu=$( { median <"$out/$2-$k-cpu"; } 2>/dev/null)
        ratio=$(awk -v a="$cpu" -v b="${base:--}" \
            'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3fx", a / b; else print "-" }')
        printf '    %-14s %12s %14s %12s\n' "$name" "${rps:--}" "${cpu:--}" "$ratio"
    done
}
echo
echo "==== eddy benchmarks: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, Linux $(uname -r); median of $ROUNDS"
if want tasks && [ -s "$out/switch" ]; then
    echo
    echo "Tasks (thread CPU time, median of 5 inside each program)"
    grep -E 'raw fiber switch|eddy_yield round trip|timer pending|swapcontext round trip' "$out/switch"
    grep -E 'spawn\+join|spawn\+start\+sleep|resident memory,|page tables' "$out/spawn"
    [ -s "$out/sync" ] && cat "$out/sync"
fi
if want timers; then
    echo
    echo "Timers: 1 000 000 timers (thread CPU ns per timer; cold = first round, page faults included)"
    printf '  %-8s %16s %16s %20s\n' "" "start+cancel" "start+fire" "start+cancel cold"
    for lib in eddy uv; do
        [ -s "$out/timer-cancel-$lib" ] || continue
        c=$(median <"$out/timer-cancel-$lib")
        f=$(median <"$out/timer-fire-$lib")
        k=$(median <"$out/timer-cold-$lib")
        name=$lib
        [ "$lib" = uv ] && name=libuv
        printf '  %-8s %16s %16s %20s\n' "$name" "$c" "$f" "$k"
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
    echo "Echo: round trips/s and the server's CPU time per round trip (ns: utime+stime, and each)"
    for cfg in $CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        uvcpu=$( { median <"$out/echo-$size-$conns-libuv-cpu"; } 2>/dev/null)
        echo "  $size B messages, $conns connections"
        printf '    %-18s %12s %12s %9s %9s %9s\n' server "round trips/s" "CPU ns/trip" user system \
            "vs libuv"
        echo "$servers" | while IFS='|' read -r name cmd; do
            k=$(key "$name")
            rps=$( { median <"$out/echo-$size-$conns-$k-rps"; } 2>/dev/null)
            cpu=$( { median <"$out/echo-$size-$conns-$k-cpu"; } 2>/dev/null)
            usr=$( { median <"$out/echo-$size-$conns-$k-user"; } 2>/dev/null)
            sys=$( { median <"$out/echo-$size-$conns-$k-sys"; } 2>/dev/null)
            ratio=$(awk -v a="$cpu" -v b="${uvcpu:--}" \
                'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }')
            printf '    %-18s %12s %12s %9s %9s %9s\n' "$name" "${rps:--}" "${cpu:--}" "${usr:--}" \
                "${sys:--}" "$ratio"
        done
    done
    if [ -x ./bench/echo-uring ] || [ -x ./bench/echo-uring-multishot ]; then
        echo "  target: eddy/io_uring against the better bare liburing loop (lower CPU per trip):"
        echo "          total CPU per trip <= 1.00x, user CPU per trip <= 1.5x"
        for cfg in $CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            best=""
            bestcpu=""
            for floor in liburing liburing-multishot; do
                c=$( { median <"$out/echo-$size-$conns-$floor-cpu"; } 2>/dev/null)
                if awk -v c="${c:--}" -v b="${bestcpu:--}" \
                    'BEGIN { exit !(c + 0 > 0 && (b + 0 <= 0 || c < b)) }'; then
                    best=$floor
                    bestcpu=$c
                fi
            done
            cpu=$( { median <"$out/echo-$size-$conns-eddy_io_uring-cpu"; } 2>/dev/null)
            usr=$( { median <"$out/echo-$size-$conns-eddy_io_uring-user"; } 2>/dev/null)
            busr=$( { median <"$out/echo-$size-$conns-$best-user"; } 2>/dev/null)
            at_most "    $size B x $conns, total vs ${best:-none}" "$cpu" "$bestcpu" 1.00
            at_most "    $size B x $conns, user vs ${best:-none}" "$usr" "$busr" 1.5
        done
    fi
    if [ -x ./bench/echo-epoll ]; then
        echo "  target: eddy/epoll against the bare epoll loop: total CPU per trip <= 1.00x, user <= 1.5x"
        for cfg in $CONFIGS; do
            size=${cfg%%:*}
            conns=${cfg##*:}
            for what in cpu user; do
                a=$( { median <"$out/echo-$size-$conns-eddy_epoll-$what"; } 2>/dev/null)
                b=$( { median <"$out/echo-$size-$conns-epoll-$what"; } 2>/dev/null)
                lim=1.00
                [ "$what" = user ] && lim=1.5
                at_most "    $size B x $conns, $([ "$what" = cpu ] && echo total || echo user) vs epoll" \
                    "$a" "$b" "$lim"
            done
        done
    fi
    echo "  target: eddy/io_uring's CPU per round trip at 1000 connections <= 0.75x eddy/epoll's:"
    for size in 64 16384; do
        ep=$( { median <"$out/echo-$size-1000-eddy_epoll-cpu"; } 2>/dev/null)
        cpu=$( { median <"$out/echo-$size-1000-eddy_io_uring-cpu"; } 2>/dev/null)
        at_most "    $size B x 1000" "$cpu" "$ep" 0.75
    done
    echo "  target: eddy's CPU per round trip <= 0.6x libuv's:"
    for cfg in $CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        uvcpu=$( { median <"$out/echo-$size-$conns-libuv-cpu"; } 2>/dev/null)
        for b in io_uring epoll; do
            cpu=$( { median <"$out/echo-$size-$conns-eddy_$b-cpu"; } 2>/dev/null)
            at_most "    eddy/$b, $size B x $conns" "$cpu" "$uvcpu" 0.6
        done
    done
fi
if want lines; then
    echo
    echo "Lines: line echo over streams, lines/s and the server's CPU time per line (utime+stime, ns)"
    for cfg in $LINE_CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        echo "  $size B lines, $conns connections"
        printf '    %-14s %12s %14s %12s\n' server "lines/s" "CPU ns/line" "vs asyncio"
        rows "$line_servers" "lines-$size-$conns" asyncio
    done
fi
if [ -n "$tls_servers" ]; then
    echo
    echo "TLS: echo over one connection, messages/s and the server's CPU time per KiB echoed (ns)"
    for size in $TLS_SIZES; do
        echo "  $size B messages"
        printf '    %-14s %12s %14s %12s\n' server "messages/s" "CPU ns/KiB" "vs openssl"
        rows "$tls_servers" "tls-$size" openssl
    done
fi
if want syscalls && [ -n "$syscall_servers" ]; then
    echo
    echo "System calls per echo round trip (strace -c -f, one 1 s run each; calls >= 0.01 per trip)"
    for cfg in $SYSCALL_CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        echo "  $size B messages, $conns connections"
        echo "$syscall_servers" | while IFS='|' read -r name cmd; do
            f="$out/sys-$size-$conns-$(key "$name")"
            [ -s "$f" ] || continue
            printf '    %-18s %s\n' "$name" \
                "$(awk '$2 >= 0.01 { printf "%s %s  ", $1, $2 }' "$f")"
        done
    done
fi
if want syscalls && [ -n "$syscall_servers" ]; then
    echo "  target: eddy/epoll one receive and one send per round trip (besides one receive per"
    echo "  connection before its first message, when its task starts):"
    for cfg in $SYSCALL_CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        f="$out/sys-$size-$conns-eddy_epoll"
        [ -s "$f" ] || continue
        awk -v c="$conns" -v t="$(cat "$f-trips" 2>/dev/null)" -v n="    $size B x $conns" '
            $1 == "recvfrom" { r = $2 } $1 == "sendto" { w = $2 }
            END { if (t + 0 <= 0) { printf "%s: no figure\n", n; exit }
                  r1 = r - c / t
                  printf "%s: %s (recvfrom %.3f per trip, %.3f without the first per connection; sendto %.3f)\n",
                      n, (r1 <= 1.005 && w <= 1.005 ? "met" : "MISSED"), r, r1, w }' "$f"
    done
fi
if want syscalls && [ -s "$out/teardown-epoll" ]; then
    echo "  1000 connections closing at once (echo-eddy, munmap calls in the server's whole run):"
    for b in io_uring epoll; do
        n=$(cat "$out/teardown-$b" 2>/dev/null)
        awk -v n="${n:--}" -v b="$b" 'BEGIN { if (n != "-")
            printf "    eddy/%s: %d munmap, %.3f per connection; target no munmap per task: %s\n",
                b, n, n / 1000, (n / 1000 < 0.01 ? "met" : "MISSED") }'
    done
fi
if want http && [ -n "$http_servers" ]; then
    echo
    echo "HTTP: requests/s (wrk -t1) and the server's CPU time per request (ns: utime+stime, and each)"
    http_table http "$http_servers"
    case " $http_servers " in *" nginx "*)
        echo "  target: eddy's CPU per request against nginx's: io_uring <= 0.7x, epoll <= 0.9x:"
        for conns in $HTTP_CONNS; do
            ngcpu=$( { median <"$out/http-$conns-nginx-cpu"; } 2>/dev/null)
            for b in io_uring epoll; do
                cpu=$( { median <"$out/http-$conns-eddy_$b-cpu"; } 2>/dev/null)
                lim=0.7
                [ "$b" = epoll ] && lim=0.9
                at_most "    eddy/$b, $conns conns" "$cpu" "$ngcpu" "$lim"
            done
        done
        echo "  target: eddy's requests/s >= nginx's at <= nginx's CPU per request:"
        for conns in $HTTP_CONNS; do
            ngcpu=$( { median <"$out/http-$conns-nginx-cpu"; } 2>/dev/null)
            ngrps=$( { median <"$out/http-$conns-nginx-rps"; } 2>/dev/null)
            for b in io_uring epoll; do
                rps=$( { median <"$out/http-$conns-eddy_$b-rps"; } 2>/dev/null)
                cpu=$( { median <"$out/http-$conns-eddy_$b-cpu"; } 2>/dev/null)
                awk -v r="$rps" -v c="$cpu" -v nr="$ngrps" -v nc="$ngcpu" \
                    -v n="    eddy/$b, $conns conns" 'BEGIN {
                    if (r + 0 > 0 && c + 0 > 0 && nr + 0 > 0 && nc + 0 > 0)
                        printf "%s: %s (requests/s %.2fx, CPU per request %.2fx)\n", n,
                            (r >= nr && c <= nc ? "met" : "MISSED"), r / nr, c / nc
                    else
                        printf "%s: no figure\n", n }'
            done
        done
        ;;
    esac
fi
if want loops && [ -s "$out/loops" ]; then
    echo
    echo "Several loops: two loops on two threads (bench/loops; latency and CPU per operation, both threads)"
    sed 's/^/  /' "$out/loops"
    echo "  the same, both threads on CPU $SERVER_CPU (no wake crosses CPUs)"
    sed 's/^/  /' "$out/loops-one-cpu"
fi
if want http-threads && [ -n "$http2_servers" ]; then
    echo
    echo "HTTP, two threads: http-hello --threads 2 and nginx with 2 workers, wrk -t2, all on CPUs $ALL_CPUS"
    http_table http2 "$http2_servers"
fi
if want files && [ -n "$files_libs" ]; then
    echo
    echo "Files: 4 KiB random reads, queue depth 32, 1 GiB file in $fsinfo"
    echo "  (IOPS, and the process's CPU ns per read: user + system, all threads)"
    echo "  fio: --ioengine=io_uring --rw=randread --bs=4k --iodepth=32 --invalidate=0; fio-batched:"
    echo "  + --iodepth_batch_submit=32 --iodepth_batch_complete_min=1 --iodepth_batch_complete_max=32;"
    echo "  fio-fixed: batched + --registerfiles --fixedbufs. eddy/io_uring-unreg: registered files off;"
    echo "  eddy-fixed: eddy/io_uring with its buffers registered (eddy_buffer_register, READ_FIXED)"
    printf '  %-20s %12s %10s %12s %10s\n' "" "page cache" "CPU ns" "O_DIRECT" "CPU ns"
    for name in $files_libs; do
        k=$(key "$name")
        c=$( { median <"$out/files-cache-$k"; } 2>/dev/null)
        cc=$( { median <"$out/files-cpu-cache-$k"; } 2>/dev/null)
        d=$( { median <"$out/files-direct-$k"; } 2>/dev/null)
        dc=$( { median <"$out/files-cpu-direct-$k"; } 2>/dev/null)
        printf '  %-20s %12s %10s %12s %10s\n' "$name" "${c:--}" "${cc:--}" "${d:--}" "${dc:--}"
    done
    case " $files_libs " in *" fio-batched "*)
        echo "  target: eddy/io_uring's IOPS >= 1.00x batched fio's (and its CPU per read, for the record):"
        for mode in cache direct; do
            # eddy/io_uring against each fio, and eddy-fixed against fio-fixed
            for pair in eddy_io_uring:fio-batched eddy_io_uring:fio-fixed eddy_io_uring:fio \
                eddy-fixed:fio-fixed; do
                ek=${pair%%:*} f=${pair#*:}
                e=$( { median <"$out/files-$mode-$ek"; } 2>/dev/null)
                ec=$( { median <"$out/files-cpu-$mode-$ek"; } 2>/dev/null)
                v=$( { median <"$out/files-$mode-$f"; } 2>/dev/null)
                vc=$( { median <"$out/files-cpu-$mode-$f"; } 2>/dev/null)
                n="    $mode vs $f"
                [ "$ek" = eddy-fixed ] && n="    $mode, eddy-fixed vs $f"
                awk -v e="$e" -v f="$v" -v ec="$ec" -v fc="$vc" -v n="$n" 'BEGIN {
                    if (e + 0 > 0 && f + 0 > 0)
                        printf "%s: %s (IOPS %.2fx, CPU per read %s)\n", n,
                            (e >= f ? "met" : "MISSED"), e / f,
                            (ec + 0 > 0 && fc + 0 > 0 ? sprintf("%.2fx", ec / fc) : "-")
                    else
                        printf "%s: no figure\n", n }'
            done
        done
        ;;
    esac
fi
if want subprocess && [ -n "$sub_libs" ]; then
    echo
    echo "Subprocesses: spawn+wait of /bin/true per second, by the parent's resident memory"
    printf '  %-14s %12s %12s %12s\n' "" "10 MiB" "2 GiB" "2 GiB/10 MiB"
    for name in $sub_libs; do
        k=$(key "$name")
        a=$( { median <"$out/sub-10-$k"; } 2>/dev/null)
        b=$( { median <"$out/sub-2048-$k"; } 2>/dev/null)
        ratio=$(awk -v a="${a:--}" -v b="${b:--}" \
            'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", b / a; else print "-" }')
        printf '  %-14s %12s %12s %12s\n' "$name" "${a:--}" "${b:--}" "$ratio"
    done
fi
if want sendzc && [ -s "$out/sendzc" ]; then
    echo
    echo "Zero-copy sends (bench/send-zc)"
    sed 's/^/  /' "$out/sendzc"
fi

if [ -n "$proxy_kinds" ]; then
    echo
    echo "Proxy: bulk TCP through examples/proxy (Gbit/s) and its ratio to a direct connection"
    d=$( { median <"$out/proxy-direct"; } 2>/dev/null)
    for kind in $proxy_kinds; do
        g=$( { median <"$out/proxy-$(key "$kind")"; } 2>/dev/null)
        awk -v n="$kind" -v g="${g:--}" -v d="${d:--}" 'BEGIN {
            if (g + 0 > 0 && d + 0 > 0) printf "  %-16s %8s  %.2fx\n", n, g, g / d
            else printf "  %-16s %8s\n", n, g }'
    done
    for kind in io_uring/splice epoll/splice; do
        g=$( { median <"$out/proxy-$(key "$kind")"; } 2>/dev/null)
        awk -v n="  target: $kind >= 0.8x direct" -v g="${g:--}" -v d="${d:--}" 'BEGIN {
            if (g + 0 > 0 && d + 0 > 0)
                printf "%s: %s (%.2fx)\n", n, (g >= 0.8 * d ? "met" : "MISSED"), g / d
            else printf "%s: no figure\n", n }'
    done
fi
if [ -n "$sendfile_kinds" ]; then
    echo
    echo "Sendfile: a 256 MiB cached file onto a stream"
    printf '  %-18s %8s %14s\n' "" "Gbit/s" "CPU ns/MiB"
    for kind in $sendfile_kinds; do
        g=$( { median <"$out/sendfile-$(key "$kind")-gbit"; } 2>/dev/null)
        c=$( { median <"$out/sendfile-$(key "$kind")-cpu"; } 2>/dev/null)
        printf '  %-18s %8s %14s\n' "$kind" "${g:--}" "${c:--}"
    done
fi
if [ -n "$missing" ]; then
    echo
    echo "Left out (not installed):$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
    echo "  run $srcdir/bench/install-peers.sh as root, then re-run configure and make bench"
fi
exit 0
