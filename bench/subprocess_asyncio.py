#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# bench/subprocess_asyncio.py: spawn+wait of /bin/true per second with
# asyncio.create_subprocess_exec, the parent's resident memory first brought
# to RESIDENT_MIB (touched page by page), as bench/subprocess does for eddy.
#
#   subprocess_asyncio.py RESIDENT_MIB SECONDS
#
# Prints "SPAWNS_PER_SEC RESIDENT_MIB".
import asyncio
import os
import sys
import time


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1 << 20)


async def spawn_loop(seconds):
    count = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        p = await asyncio.create_subprocess_exec("/bin/true")
        await p.wait()
        count += 1
    return count / (time.monotonic() - start)


def main():
    mib, seconds = int(sys.argv[1]), float(sys.argv[2])
    extra = max(0, mib - resident_mib()) << 20
    ballast = bytearray(extra)
    ballast[::4096] = b"\x01" * len(range(0, extra, 4096))  # resident, page by page
    resident = resident_mib()
    rate = asyncio.run(spawn_loop(seconds))
    print("%.0f %d" % (rate, resident))
    del ballast


if __name__ == "__main__":
    main()
