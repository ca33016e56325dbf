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
#   EDDY_BENCH_ONLY="tasks timers echo lines tls http files"   the sections to run (default: all)
#   EDDY_BENCH_ECHO="eddy/io_uring eddy/epoll liburing" the echo servers to run (default: all)
#   EDDY_BENCH_FILES_DIR=DIR   where the files section puts its 1 GiB file (default: a temporary dir)
set -u
srcdir=${srcdir:-.}
ROUNDS=${EDDY_BENCH_ROUNDS:-3}
SECS=${EDDY_BENCH_SECONDS:-2}
ONLY=${EDDY_BENCH_ONLY:-tasks timers echo lines tls http files}
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
        else
            printf "%s: no figure\n", n }'
}

# ---- tasks --------------------------------------------------------------------
if want tasks; then
    echo "== tasks (bench/switch, bench/spawn; CPU $SERVER_CPU)"
    taskset -c "$SERVER_CPU" ./bench/switch | tee "$out/switch"
    taskset -c "$SERVER_CPU" ./bench/spawn | tee "$out/spawn"
    taskset -c "$SERVER_CPU" ./bench/sync "$srcdir" | tee "$out/sync"
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
if [ -n "${EDDY_BENCH_ECHO:-}" ]; then
    servers=$(echo "$servers" | while IFS='|' read -r name cmd; do
        case " $EDDY_BENCH_ECHO " in *" $name "*) echo "$name|$cmd" ;; esac
    done)
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

# ---- lines ----------------------------------------------------------------------
# Line echo over streams: bench/lines-eddy (readline, write, drain on eddy
# streams) against the same server on asyncio streams (and uvloop), driven by
# echo-load, whose messages are lines.
LINE_CONFIGS="64:50 64:1000 1024:50"
line_servers="eddy/io_uring|env EDDY_BACKEND=io_uring ./bench/lines-eddy PORT
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

cpu_ticks() { # utime + stime of a process (all its threads), in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

listening() { # port: true once something listens on 127.0.0.1:port
    awk -v p="$(printf '0100007F:%04X' "$1")" '$2 == p && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp
}

nginx_conf() { # port -> $out/nginx/nginx.conf
    mkdir -p "$out/nginx"
    cat >"$out/nginx/nginx.conf" <<EOF
worker_processes 1;
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
        listen 127.0.0.1:$1;
        location / { return 200 "Hello, World!"; }
    }
}
EOF
}

run_http() { # name conns port -> "requests/s CPU-ns-per-request"
    if [ "$1" = nginx ]; then
        nginx_conf "$3"
        taskset -c "$SERVER_CPU" "$NGINX" -p "$out/nginx" -c "$out/nginx/nginx.conf" \
            </dev/null >"$out/server.log" 2>&1 &
    else
        taskset -c "$SERVER_CPU" env EDDY_BACKEND="${1#eddy/}" ./examples/http-hello "$3" \
            </dev/null >"$out/server.log" 2>&1 &
    fi
    spid=$!
    # the process that serves: nginx's one worker, the child of its master
    wpid=$spid
    i=0
    while [ $i -lt 50 ]; do
        if [ "$1" = nginx ]; then
            w=$(awk '{ print $1 }' "/proc/$spid/task/$spid/children" 2>/dev/null)
            [ -n "$w" ] && wpid=$w
        fi
        if { [ "$1" != nginx ] || [ "$wpid" != "$spid" ]; } && listening "$3"; then break; fi
        sleep 0.1
        i=$((i + 1))
    done
    t0=$(cpu_ticks "$wpid")
    res=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"${SECS}s" "http://127.0.0.1:$3/" 2>&1)
    t1=$(cpu_ticks "$wpid")
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    line=$(echo "$res" | awk -v t0="$t0" -v t1="$t1" -v hz="$HZ" '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { r = $2 }
        /Non-2xx|Socket errors/ { bad = 1 }
        END { if (n > 0 && !bad) printf "%.0f %.0f\n", r, (t1 - t0) * 1e9 / hz / n; else print "- -" }')
    if [ "$line" = "- -" ]; then
        echo "  $1 failed: $(echo "$res" | tail -3 | tr '\n' ' ') $(head -2 "$out/server.log" | tr '\n' ' ')" >&2
    fi
    echo "$line"
}

http_servers=""
if want http; then
    if ! command -v wrk >/dev/null 2>&1 || ! [ -x ./examples/http-hello ]; then
        missing="$missing wrk"
    else
        http_servers="eddy/io_uring eddy/epoll"
        if [ -n "$NGINX" ]; then http_servers="$http_servers nginx"; else missing="$missing nginx"; fi
        echo "== http: wrk -t1 against examples/http-hello and nginx (1 worker) on 127.0.0.1 (server CPU $SERVER_CPU, wrk CPU $CLIENT_CPU, ${SECS} s rounds)"
        port=21000
        r=1
        while [ "$r" -le "$ROUNDS" ]; do
            for conns in $HTTP_CONNS; do
                for name in $http_servers; do
                    port=$((port + 1))
                    line=$(run_http "$name" "$conns" "$port")
                    echo "  round $r $conns conns  $(printf '%-14s' "$name") $line"
                    k=$(key "$name")
                    echo "$line" | awk '{ print $1 }' >>"$out/http-$conns-$k-rps"
                    echo "$line" | awk '{ print $2 }' >>"$out/http-$conns-$k-cpu"
                done
            done
            r=$((r + 1))
        done
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
        files_libs="eddy/io_uring eddy/epoll"
        if ./bench/files uv "$fdat" 0 0 >/dev/null 2>&1; then
            files_libs="$files_libs libuv"
        else
            missing="$missing libuv"
        fi
        if command -v fio >/dev/null 2>&1; then files_libs="$files_libs fio"; else missing="$missing fio"; fi
        echo "== files: 4 KiB random reads, queue depth 32, 1 GiB file (IOPS; CPU $SERVER_CPU, ${SECS} s rounds)"
        r=1
        while [ "$r" -le "$ROUNDS" ]; do
            for mode in cache direct; do
                d=0
                [ "$mode" = direct ] && d=1
                for name in $files_libs; do
                    # page cache runs start from a fully cached file
                    [ $d = 0 ] && cat "$fdat" >/dev/null
                    case "$name" in
                    eddy/*)
                        iops=$(taskset -c "$SERVER_CPU" env EDDY_BACKEND="${name#eddy/}" \
                            ./bench/files eddy "$fdat" $d "$SECS" 2>"$out/files.log") ;;
                    libuv) iops=$(taskset -c "$SERVER_CPU" ./bench/files uv "$fdat" $d "$SECS" 2>"$out/files.log") ;;
                    fio)
                        # invalidate=0: fio would drop the page cache first
                        iops=$(taskset -c "$SERVER_CPU" fio --name=r --filename="$fdat" --rw=randread \
                            --bs=4k --iodepth=32 --ioengine=io_uring --direct=$d --invalidate=0 \
                            --ramp_time=500ms --runtime="$SECS" --time_based --output-format=terse \
                            --terse-version=3 2>"$out/files.log" | awk -F';' '{ print $8 }') ;;
                    esac
                    [ -n "$iops" ] || { iops="-"; echo "  $name failed: $(head -2 "$out/files.log")" >&2; }
                    echo "  round $r $mode $(printf '%-14s' "$name") $iops"
                    echo "$iops" >>"$out/files-$mode-$(key "$name")"
                done
            done
            r=$((r + 1))
        done
        rm -f "$fdat"
    fi
fi

# ---- the table ----------------------------------------------------------------
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
    echo "Echo: round trips/s and the server's CPU time per round trip (utime+stime, ns)"
    for cfg in $CONFIGS; do
        size=${cfg%%:*}
        conns=${cfg##*:}
        uvcpu=$( { median <"$out/echo-$size-$conns-libuv-cpu"; } 2>/dev/null)
        echo "  $size B messages, $conns connections"
        printf '    %-14s %12s %14s %10s\n' server "round trips/s" "CPU ns/trip" "vs libuv"
        echo "$servers" | while IFS='|' read -r name cmd; do
            k=$(key "$name")
            rps=$( { median <"$out/echo-$size-$conns-$k-rps"; } 2>/dev/null)
            cpu=$( { median <"$out/echo-$size-$conns-$k-cpu"; } 2>/dev/null)
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
            base=$( { median <"$out/echo-$size-$conns-liburing-cpu"; } 2>/dev/null)
            cpu=$( { median <"$out/echo-$size-$conns-eddy_io_uring-cpu"; } 2>/dev/null)
            at_most "    $size B x $conns" "$cpu" "$base" 1.05
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
if want http && [ -n "$http_servers" ]; then
    echo
    echo "HTTP: requests/s (wrk -t1) and the server's CPU time per request (utime+stime, ns)"
    for conns in $HTTP_CONNS; do
        ngcpu=$( { median <"$out/http-$conns-nginx-cpu"; } 2>/dev/null)
        ngrps=$( { median <"$out/http-$conns-nginx-rps"; } 2>/dev/null)
        echo "  $conns connections"
        printf '    %-14s %12s %14s %10s\n' server "requests/s" "CPU ns/req" "vs nginx"
        for name in $http_servers; do
            k=$(key "$name")
            rps=$( { median <"$out/http-$conns-$k-rps"; } 2>/dev/null)
            cpu=$( { median <"$out/http-$conns-$k-cpu"; } 2>/dev/null)
            ratio=$(awk -v a="$cpu" -v b="${ngcpu:--}" \
                'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }')
            printf '    %-14s %12s %14s %10s\n' "$name" "${rps:--}" "${cpu:--}" "$ratio"
        done
    done
    case " $http_servers " in *" nginx "*)
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
if want files && [ -n "$files_libs" ]; then
    echo
    echo "Files: 4 KiB random reads, queue depth 32, 1 GiB file (IOPS)"
    printf '  %-14s %12s %12s\n' "" "page cache" "O_DIRECT"
    for name in $files_libs; do
        k=$(key "$name")
        c=$( { median <"$out/files-cache-$k"; } 2>/dev/null)
        d=$( { median <"$out/files-direct-$k"; } 2>/dev/null)
        printf '  %-14s %12s %12s\n' "$name" "${c:--}" "${d:--}"
    done
    case " $files_libs " in *" fio "*)
        echo "  target: eddy/io_uring >= 90 % of fio's IOPS:"
        for mode in cache direct; do
            e=$( { median <"$out/files-$mode-eddy_io_uring"; } 2>/dev/null)
            f=$( { median <"$out/files-$mode-fio"; } 2>/dev/null)
            awk -v e="$e" -v f="$f" -v n="    $mode" 'BEGIN {
                if (e + 0 > 0 && f + 0 > 0)
                    printf "%s: %s (%.2fx)\n", n, (e >= 0.9 * f ? "met" : "MISSED"), e / f
                else
                    printf "%s: no figure\n", n }'
        done
        ;;
    esac
fi
if [ -n "$missing" ]; then
    echo
    echo "Left out (not installed):$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
    echo "  run $srcdir/bench/install-peers.sh as root, then re-run configure and make bench"
fi
exit 0
