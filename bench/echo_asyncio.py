# SPDX-License-Identifier: MIT
"""bench/echo_asyncio.py: the Python echo servers of `make bench`.

    python3 echo_asyncio.py port [uvloop]

A protocol-style server (asyncio.Protocol, data_received writes straight back),
on asyncio's default loop or, with "uvloop", on uvloop. Runs until killed."""
import asyncio
import resource
import socket
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
