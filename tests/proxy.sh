#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/proxy with real peers on each backend here, spliced and copied:
# Python peers (a 16 MiB echo both ways at once, a half-close whose answer
# comes after the EOF went through, an idle connection closed by the proxy)
# and curl fetching a file from Python's http.server through it. Prints TAP;
# runs from the build directory.
proxy=./examples/proxy
skip() { echo "1..0 # SKIP $*"; exit 0; }
[ -x "$proxy" ] || skip "no examples/proxy in this build"
command -v python3 >/dev/null 2>&1 || skip "no python3"
have_curl=no
command -v curl >/dev/null 2>&1 && have_curl=yes

tmp=$(mktemp -d) || exit 99
pids=
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/peer.py" <<'EOF'
import hashlib, os, socket, sys, threading, time

def serve(mode, portfile):
    ls = socket.socket()
    ls.bind(('127.0.0.1', 0))
    ls.listen(64)
    with open(portfile + '.tmp', 'w') as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(portfile + '.tmp', portfile)
    def one(c):
        if mode == 'echo':
            while b := c.recv(1 << 16):
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        else:  # answer once the EOF came through
            n = 0
            while b := c.recv(1 << 16):
                n += len(b)
            c.sendall(b'got %d bytes' % n)
        c.close()
    while True:
        c, _ = ls.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()

def client(mode, port):
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(30)  # a lost EOF fails the test instead of hanging it
    if mode == 'big':
        data = hashlib.shake_256(b'eddy').digest(1 << 20) * 16
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while b := s.recv(1 << 16):
            got += b
        t.join()
        assert got == data, 'echo differs: %d of %d bytes' % (len(got), len(data))
    elif mode == 'halfclose':
        s.sendall(b'hello')
        s.shutdown(socket.SHUT_WR)
        got = b''
        while b := s.recv(100):
            got += b
        assert got == b'got 5 bytes', got
    elif mode == 'idle':
        start = time.monotonic()
        s.settimeout(10)
        assert s.recv(10) == b'', 'the proxy did not close an idle connection'
        took = time.monotonic() - start
        assert 0.4 < took < 5, took
        # activity keeps a connection open past the idle time
        s2 = socket.create_connection(('127.0.0.1', port))
        for i in range(8):
            time.sleep(0.2)
            s2.sendall(b'x')
            assert s2.recv(1) == b'x'
        s2.close()
    print('ok')

if sys.argv[1] == 'serve':
    serve(sys.argv[2], sys.argv[3])
else:
    client(sys.argv[2], int(sys.argv[3]))
EOF

start_upstream() { # mode -> port in $upstream
    rm -f "$tmp/port.$1"
    python3 "$tmp/peer.py" serve "$1" "$tmp/port.$1" &
    pids="$pids $!"
    for _ in $(seq 100); do [ -f "$tmp/port.$1" ] && break; sleep 0.05; done
    upstream=$(cat "$tmp/port.$1")
}

start_proxy() { # backend mode(-c or "") idle upstream_port -> port in $port
    : >"$tmp/proxy.out"
    EDDY_BACKEND=$1 "$proxy" $2 -i "$3" 0 127.0.0.1 "$4" >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
    proxy_pid=$!
    pids="$pids $proxy_pid"
    for _ in $(seq 100); do grep -q listening "$tmp/proxy.out" && break; sleep 0.05; done
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$tmp/proxy.out")
}

stop_proxy() {
    kill "$proxy_pid" 2>/dev/null
    wait "$proxy_pid" 2>/dev/null
}

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; sed 's/^/# /' "$tmp/out" "$tmp/proxy.err"; }
check() { # description, command...
    what=$1
    shift
    if "$@" >"$tmp/out" 2>&1 && grep -q ok "$tmp/out"; then ok "$what"; else not_ok "$what"; fi
}

start_upstream echo
echo_port=$upstream
start_upstream answer
answer_port=$upstream
if [ $have_curl = yes ]; then
    mkdir "$tmp/www"
    head -c 5000000 /dev/urandom >"$tmp/www/file"
    (cd "$tmp/www" && exec python3 -m http.server --bind 127.0.0.1 0 >"$tmp/http.out" 2>&1) &
    pids="$pids $!"
    for _ in $(seq 100); do grep -q "port" "$tmp/http.out" && break; sleep 0.05; done
    http_port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$tmp/http.out" | head -1)
fi

backends=$(./tests/backends 2>/dev/null | grep -v ':')
for b in $backends; do
    for mode in splice copy; do
        flag=
        [ $mode = copy ] && flag=-c
        start_proxy "$b" "$flag" 30 "$echo_port"
        check "[$b/$mode] 16 MiB echoed both ways at once" python3 "$tmp/peer.py" client big "$port"
        stop_proxy
        start_proxy "$b" "$flag" 30 "$answer_port"
        check "[$b/$mode] half-close: the EOF goes through, the answer comes back" \
            python3 "$tmp/peer.py" client halfclose "$port"
        stop_proxy
        start_proxy "$b" "$flag" 0.5 "$echo_port"
        check "[$b/$mode] an idle connection is closed, an active one is not" \
            python3 "$tmp/peer.py" client idle "$port"
        stop_proxy
        if [ $have_curl = yes ] && [ -n "$http_port" ]; then
            start_proxy "$b" "$flag" 30 "$http_port"
            rm -f "$tmp/got"
            if curl -sf -o "$tmp/got" "http://127.0.0.1:$port/file" && cmp -s "$tmp/got" "$tmp/www/file"; then
                ok "[$b/$mode] curl fetches a 5 MB file from http.server through it"
            else
                echo "curl failed" >"$tmp/out"
                not_ok "[$b/$mode] curl fetches a 5 MB file from http.server through it"
            fi
            stop_proxy
        fi
    done
done
echo "1..$n"
