# SPDX-License-Identifier: MIT
"""bench/lines_asyncio.py: the Python line echo server of `make bench`.

    python3 lines_asyncio.py port [uvloop]

asyncio.start_server, and per connection: readline, write, drain (the twin of
bench/lines-eddy.c), on asyncio's default loop or, with "uvloop", on uvloop.
Runs until killed."""
import asyncio
import resource
import socket
import sys


async def echo_lines(reader, writer):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


async def main(port):
    server = await asyncio.start_server(echo_lines, "127.0.0.1", port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
