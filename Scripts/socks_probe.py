#!/usr/bin/env python3
"""SOCKS clients for tunnel's -D tests, good and hostile.

Usage: socks_probe.py CASE PROXY_PORT [ARGS...]; prints one result line.
Cases:
  reply5 HOST PORT CMD     SOCKS5 greeting + request (CMD 1 CONNECT, 2 BIND, 3 UDP);
                           prints "reply XX" (the reply code) or "closed".
  reply4 HOST_IP PORT CMD  SOCKS4 request; prints "reply XX" or "closed".
  echo5 HOST PORT          CONNECT, then pipelines "ping" right after the request;
                           prints what came back.
  garbage BYTES_HEX        sends raw bytes; prints "closed" once the proxy closes
                           (within 30 s), else "open".
  stall BYTES_HEX          sends a partial greeting and waits for the proxy to close
                           it; prints "closed" (deadline) or "open" after 60 s.
  crowd N HOST PORT        opens N half-greetings that stall, then a good CONNECT +
                           echo; prints "echo OK N_OPEN" where N_OPEN is how many
                           of the stalled ones were still open when it succeeded.
"""
import socket
import struct
import sys
import time

PROXY = ("127.0.0.1", int(sys.argv[2]))


def connect():
    s = socket.create_connection(PROXY, timeout=30)
    s.settimeout(30)
    return s


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def request5(host, port, cmd):
    try:
        packed = socket.inet_pton(socket.AF_INET, host)
        address = b"\x01" + packed
    except OSError:
        try:
            packed = socket.inet_pton(socket.AF_INET6, host)
            address = b"\x04" + packed
        except OSError:
            address = b"\x03" + bytes([len(host)]) + host.encode()
    return b"\x05" + bytes([cmd]) + b"\x00" + address + struct.pack(">H", port)


def socks5(host, port, cmd, payload=b""):
    s = connect()
    s.sendall(b"\x05\x01\x00")
    if read_exact(s, 2) != b"\x05\x00":
        return s, None
    s.sendall(request5(host, port, cmd) + payload)
    head = read_exact(s, 4)
    if head is None:
        return s, None
    kind = head[3]
    rest = {1: 4, 4: 16}.get(kind)
    if rest is None:
        length = read_exact(s, 1)
        rest = length[0] if length else 0
    read_exact(s, rest + 2)
    return s, head[1]


def closed_within(s, seconds):
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def main():
    case = sys.argv[1]
    args = sys.argv[3:]
    if case == "reply5":
        s, code = socks5(args[0], int(args[1]), int(args[2]))
        print("closed" if code is None else "reply %02x" % code)
    elif case == "reply4":
        s = connect()
        s.sendall(b"\x04" + bytes([int(args[2])]) + struct.pack(">H", int(args[1])) + socket.inet_aton(args[0]) + b"me\x00")
        head = read_exact(s, 8)
        print("closed" if head is None else "reply %02x" % head[1])
    elif case == "echo5":
        s, code = socks5(args[0], int(args[1]), 1, payload=b"ping")
        if code != 0:
            print("reply %s" % code)
            return
        print((read_exact(s, 4) or b"").decode(errors="replace"))
    elif case == "garbage":
        s = connect()
        s.sendall(bytes.fromhex(args[0]))
        print("closed" if closed_within(s, 30) else "open")
    elif case == "stall":
        s = connect()
        s.sendall(bytes.fromhex(args[0]))
        print("closed" if closed_within(s, 60) else "open")
    elif case == "crowd":
        count = int(args[0])
        stalled = []
        for _ in range(count):
            c = socket.create_connection(PROXY, timeout=30)
            c.sendall(b"\x05\x02")  # promises two methods, sends none
            stalled.append(c)
        s, code = socks5(args[1], int(args[2]), 1, payload=b"ping")
        answer = (read_exact(s, 4) or b"").decode(errors="replace") if code == 0 else "reply %s" % code
        still_open = 0
        for c in stalled:
            c.setblocking(False)
            try:
                still_open += 0 if c.recv(1) == b"" else 1
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        print("echo %s %d" % ("OK" if answer == "ping" else answer, still_open))
    else:
        sys.exit("unknown case " + case)


main()
