# SPDX-License-Identifier: MIT
"""bench/sync_asyncio.py: asyncio's side of bench/sync.

    python3 sync_asyncio.py

The same two measurements as bench/sync.c, on asyncio's default loop: a lock
handed between two tasks (each acquires, yields with sleep(0) while holding
it, releases), and a round trip through two queues between two tasks.
Prints "LOCK_NS QUEUE_NS": ns per acquisition and per round trip, the median
of 3 runs in this thread's CPU time."""
import asyncio
import statistics
import time

HANDOFFS = 100_000  # per task per run
ROUND_TRIPS = 100_000  # per run


async def lock_turns(lock):
    for _ in range(HANDOFFS):
        await lock.acquire()
        await asyncio.sleep(0)
        lock.release()


async def lock_run():
    lock = asyncio.Lock()
    t0 = time.thread_time_ns()
    await asyncio.gather(lock_turns(lock), lock_turns(lock))
    return (time.thread_time_ns() - t0) / (2 * HANDOFFS)


async def pinger(there, back):
    for i in range(ROUND_TRIPS):
        await there.put(i)
        if await back.get() != i:
            raise RuntimeError("wrong item")


async def ponger(there, back):
    for _ in range(ROUND_TRIPS):
        await back.put(await there.get())


async def queue_run():
    there, back = asyncio.Queue(), asyncio.Queue()
    t0 = time.thread_time_ns()
    await asyncio.gather(pinger(there, back), ponger(there, back))
    return (time.thread_time_ns() - t0) / ROUND_TRIPS


def main():
    locks, queues = [], []
    for _ in range(3):
        locks.append(asyncio.run(lock_run()))
        queues.append(asyncio.run(queue_run()))
    print(f"{statistics.median(locks):.1f} {statistics.median(queues):.1f}")


if __name__ == "__main__":
    main()
