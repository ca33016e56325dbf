#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start, step 1: installs what eddy needs to build and test (Debian 12
# packages), builds it in ./build, and runs the demo.
set -eu
cd "$(dirname "$0")"

packages="build-essential autoconf automake libtool pkg-config libcriterion-dev liburing-dev libseccomp-dev libssl-dev openssl curl valgrind scdoc libcurl4-openssl-dev python3"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

echo "== building eddy in ./build"
./bootstrap >/dev/null 2>&1 || ./bootstrap
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q
make -j"$(nproc)" >/dev/null

echo "== running the demo (build/examples/demo)"
./examples/demo

echo "== echo-server and echo-client (build/examples/): 1000 messages over TCP"
log=$(mktemp)
./examples/echo-server 0 1 >"$log" &
server=$!
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.1
done
cat "$log"
rm -f "$log"
[ -n "$port" ] || { kill "$server" 2>/dev/null; echo "echo-server did not start" >&2; exit 1; }
./examples/echo-client 127.0.0.1 "$port" 1000 64
wait "$server"

echo "== cat (build/examples/cat) of the demo's source, through the loop's file I/O"
./examples/cat ../examples/demo.c | head -n 3
