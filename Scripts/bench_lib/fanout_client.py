"""Fan-out client for Scripts/bench.

`python3 fanout_client.py --port P --connections N --size BYTES --timeout S`
opens N connections to 127.0.0.1:P at once; each sends BYTES of random data
(a different slice of a random pool per connection), reads BYTES back,
compares them byte for byte and closes. Prints one JSON object on stdout:
wall time from the first connect to the last close, failures by kind, and a
few example errors.

--paced K: at most K connections at a time wait for their first echoed byte
(proof that the forwarder accepted them), so a forwarder with a small listen
backlog is not overrun; each connection then stays open until every one has
been echoed, so all N are open together at the end.

--hold (with --paced): once every connection has settled, prints `HELD <ok>`
on stdout and keeps the good ones open until a line (or EOF) arrives on
stdin: the caller measures the forwarder with all N idle connections open.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time


class OpenCount:
    """Connections open right now, and the most at once."""
    value = 0
    now = 0

    @classmethod
    def opened(cls):
        cls.now += 1
        cls.value = max(cls.value, cls.now)

    @classmethod
    def closed(cls):
        cls.now -= 1


peak = OpenCount


class EchoCheck(asyncio.Protocol):
    def __init__(self, expected, done, first_byte=None):
        self.expected = expected
        self.size = len(expected)
        self.got = 0
        self.done = done
        self.first_byte = first_byte
        self.transport = None
        self.closed = done.get_loop().create_future()

    def connection_made(self, transport):
        OpenCount.opened()
        self.transport = transport
        transport.write(self.expected)

    def _finish(self, result):
        if not self.done.done():
            self.done.set_result(result)

    def data_received(self, data):
        if self.first_byte is not None and not self.first_byte.done():
            self.first_byte.set_result(None)
        if self.done.done():
            return
        end = self.got + len(data)
        if end > self.size:
            self._finish(("mismatch", f"{end - self.size} bytes more than were sent"))
            self.transport.abort()
            return
        if self.expected[self.got:end] != data:
            first = next(i for i in range(len(data)) if data[i] != self.expected[self.got + i])
            self._finish(("mismatch", f"byte {self.got + first} differs"))
            self.transport.abort()
            return
        self.got = end
        if end == self.size:
            self._finish(None)
            if self.first_byte is None:
                self.transport.close()

    def eof_received(self):
        self._finish(("short", f"EOF after {self.got} of {self.size} bytes"))
        return False

    def connection_lost(self, exc):
        OpenCount.closed()
        self._finish(("short", f"connection lost after {self.got} of {self.size} bytes: {exc or 'closed'}"))
        if not self.closed.done():
            self.closed.set_result(None)


async def one(port, expected, start, deadline, gate=None, barrier=None):
    """Returns (failure or None, seconds since start when it finished).
    Paced mode (`gate`, `barrier`): holds a slot of `gate` until the first
    echoed byte, and closes only once every connection has settled."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    first_byte = loop.create_future() if gate else None
    proto = None

    def factory():
        nonlocal proto
        proto = EchoCheck(expected, done, first_byte)
        return proto

    async def finish(transport, failure):
        """Counts this connection as settled; a good one waits for the rest, then closes."""
        if barrier is not None:
            barrier.settle()
            if failure is None:
                try:
                    await asyncio.wait_for(barrier.event.wait(), max(0.001, deadline - time.perf_counter()))
                except asyncio.TimeoutError:
                    pass
                if barrier.released is not None:
                    await barrier.released.wait()
                transport.close()
        if failure is None:
            try:  # "last close": wait until the socket is really closed
                await asyncio.wait_for(proto.closed, max(0.001, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                transport.abort()
        return failure, time.perf_counter() - start

    if gate:
        await gate.acquire()
    released = False

    def release():
        nonlocal released
        if gate and not released:
            released = True
            gate.release()

    transport = None
    try:
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(factory, "127.0.0.1", port), max(0.001, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            return await finish(None, ("timeout", "no connection before the deadline"))
        except OSError as e:
            return await finish(None, ("connect", f"{type(e).__name__}: {e}"))
        if first_byte is not None:
            first_byte.add_done_callback(lambda _: release())
        try:
            result = await asyncio.wait_for(asyncio.shield(done), max(0.001, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            got = proto.got if proto else 0
            transport.abort()
            return await finish(None, ("timeout", f"{got} of {len(expected)} bytes echoed before the deadline"))
    finally:
        release()
    return await finish(transport, result)


class Barrier:
    """Set once `total` connections have settled (echoed or failed)."""
    def __init__(self, total, hold=False):
        self.total, self.count, self.event = total, 0, asyncio.Event()
        self.released = asyncio.Event() if hold else None   # --hold: set once stdin says so

    def settle(self):
        self.count += 1
        if self.count >= self.total:
            self.event.set()


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    size = args.size
    pool = os.urandom(max(16 << 20, size * 4))
    view = memoryview(pool)
    rnd = random.Random(os.urandom(16))
    slices = []
    for _ in range(args.connections):
        off = rnd.randrange(len(pool) - size)
        slices.append(view[off:off + size])
    gate = asyncio.Semaphore(args.paced) if args.paced else None
    barrier = Barrier(args.connections, args.hold) if args.paced else None
    start = time.perf_counter()
    deadline = start + args.timeout
    held_s = None

    async def hold():
        nonlocal held_s
        try:
            await asyncio.wait_for(barrier.event.wait(), max(0.001, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            pass
        held_s = time.perf_counter() - start
        print(f"HELD {OpenCount.now}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        barrier.released.set()

    holder = asyncio.ensure_future(hold()) if barrier is not None and args.hold else None
    results = await asyncio.gather(*(one(args.port, s, start, deadline, gate, barrier) for s in slices))
    wall = time.perf_counter() - start
    if holder is not None:
        await holder
    failures = {"connect": 0, "short": 0, "mismatch": 0, "timeout": 0}
    examples = []
    latencies = []
    failed_at = []
    for failure, at in results:
        if failure is None:
            latencies.append(at)
        else:
            failed_at.append(at)
            failures[failure[0]] += 1
            if len(examples) < 5:
                examples.append(f"{failure[0]}: {failure[1]}")
    latencies.sort()
    failed_at.sort()

    def pct(values, p):
        return round(values[min(len(values) - 1, int(p * len(values)))], 4) if values else None

    print(json.dumps({
        "connections": args.connections,
        "paced": args.paced,
        "peak_open": peak.value if args.paced else None,
        "bytes_each": size,
        "ok": len(latencies),
        "failures": sum(failures.values()),
        "failures_by_kind": failures,
        "examples": examples,
        "wall_s": round(wall, 4),
        "all_open_after_s": round(held_s, 4) if held_s is not None else None,
        "done_at_s": {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "max": pct(latencies, 1.0)},
        "failed_at_s": {"min": pct(failed_at, 0.0), "p50": pct(failed_at, 0.5), "max": pct(failed_at, 1.0)},
    }))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--size", type=int, default=65536)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--paced", type=int, default=0, metavar="K",
                   help="at most K connections waiting for their first echoed byte; all stay open until all are echoed")
    p.add_argument("--hold", action="store_true",
                   help="with --paced: print HELD once all have settled, keep them open until a line on stdin")
    asyncio.run(main(p.parse_args()))
