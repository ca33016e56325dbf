#!/bin/sh
# Quick start, step 1: installs what eddy needs to build and test (Debian 12
# packages), builds it in ./build, and runs the demo.
set -eu
cd "$(dirname "$0")"

packages="build-essential autoconf automake libtool pkg-config libcriterion-dev liburing-dev libseccomp-dev valgrind"
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
