#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/curl-multi against a local server (python3 -m http.server on
# 127.0.0.1): a few files, small to several MiB, downloaded concurrently on
# each backend a loop can run on here; the bytes must be the server's. A
# missing file must fail the run. Prints TAP for make check; runs from the
# build directory.
tmp=$(mktemp -d) || exit 99
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

if ! command -v python3 >/dev/null 2>&1; then
    echo "1..0 # SKIP no python3 for the local server"
    exit 0
fi
mkdir "$tmp/www" "$tmp/got"
head -c 1 /dev/urandom >"$tmp/www/one"
head -c 100000 /dev/urandom >"$tmp/www/small.bin"
head -c 3000000 /dev/urandom >"$tmp/www/mid.bin"
head -c 9000000 /dev/urandom >"$tmp/www/big.bin"
: >"$tmp/www/empty"
files="one small.bin mid.bin big.bin empty"

# A free port: the server says which it bound (port 0 lets the kernel pick).
(cd "$tmp/www" && exec python3 -u -c '
import http.server, socketserver, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet) as s:
    print(s.server_address[1], flush=True)
    s.serve_forever()
' >"$tmp/port") &
server=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$tmp/port")
if [ -z "$port" ]; then
    echo "1..0 # SKIP the local server did not start"
    exit 0
fi

backends=$(tests/backends 2>/dev/null)
count=$(($(echo "$backends" | wc -w) * 2))
echo "1..$count"
n=0
for b in $backends; do
    n=$((n + 1))
    rm -f "$tmp/got"/*
    urls=
    for f in $files; do urls="$urls http://127.0.0.1:$port/$f"; done
    # shellcheck disable=SC2086
    if EDDY_BACKEND=$b timeout 60 ${EDDY_TEST_WRAPPER:-} examples/curl-multi "$tmp/got" $urls >"$tmp/log" 2>&1; then
        ok=yes
        for f in $files; do cmp -s "$tmp/www/$f" "$tmp/got/$f" || { ok=no; echo "# $f differs" ; }; done
    else
        ok=no
        sed 's/^/# /' "$tmp/log"
    fi
    [ $ok = yes ] && echo "ok $n - [$b] curl-multi downloads $files intact" ||
        echo "not ok $n - [$b] curl-multi downloads $files intact"
    n=$((n + 1))
    if EDDY_BACKEND=$b timeout 60 examples/curl-multi "$tmp/got" "http://127.0.0.1:$port/one" \
        "http://127.0.0.1:$port/no-such-file" >"$tmp/log" 2>&1; then
        echo "not ok $n - [$b] a missing file fails the run"
    else
        grep -q 'no-such-file.*404' "$tmp/log" && echo "ok $n - [$b] a missing file fails the run" ||
            { sed 's/^/# /' "$tmp/log"; echo "not ok $n - [$b] a missing file fails the run"; }
    fi
done
