#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/install-peers.sh: installs what `make bench` compares eddy against,
# from Debian packages only. Run as root (or with sudo); then re-run configure
# so that it finds the libraries.
#
#   libuv1-dev libev-dev libevent-dev   echo and timer peers (C)
#   python3-uvloop                      asyncio and uvloop echo servers
#   fio wrk nginx                       files and HTTP figures
#   strace                              system calls per echo round trip
set -e
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    libuv1-dev libev-dev libevent-dev python3-uvloop fio wrk nginx strace
echo "bench peers installed: re-run configure, then make bench"
