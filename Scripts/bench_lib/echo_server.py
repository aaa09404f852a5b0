"""Echo server for Scripts/bench: plain asyncio, one process, large backlog.

Run as `python3 echo_server.py [PORT] [--backpressure]` (0 or nothing: a
free port). Prints `READY <port>` on stdout once it listens, then echoes every
byte back until the peer half-closes, then closes after its write buffer is
flushed. With --backpressure it stops reading from a connection while its
writes back are stuck, as a blocking echo server does: a client that never
reads then stalls the whole path instead of filling this process's memory.
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


class BackpressureEcho(Echo):
    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def main(port, protocol):
    raise_nofile()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8192)  # the kernel caps it at net.core.somaxconn
    sock.setblocking(False)
    server = await loop.create_server(protocol, sock=sock, backlog=8192)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--backpressure"]
    try:
        asyncio.run(main(int(args[0]) if args else 0,
                         BackpressureEcho if "--backpressure" in sys.argv[1:] else Echo))
    except KeyboardInterrupt:
        pass
