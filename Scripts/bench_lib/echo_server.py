"""Echo server for Scripts/bench: plain asyncio, one process, large backlog.

Run as `python3 echo_server.py [PORT]` (0 or nothing: a free port). Prints
`READY <port>` on stdout once it listens, then echoes every byte back until
the peer half-closes, then closes after its write buffer is flushed.
"""
import asyncio
import resource
import socket
import sys


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close once everything written has been flushed

    def connection_lost(self, exc):
        pass


async def main(port):
    raise_nofile()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8192)  # the kernel caps it at net.core.somaxconn
    sock.setblocking(False)
    server = await loop.create_server(Echo, sock=sock, backlog=8192)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
