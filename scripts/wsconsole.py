#!/usr/bin/env python3
"""Prints a cmbs WebSocket console, one line per text frame.

    python3 scripts/wsconsole.py [--until LINE] [--timeout SECONDS] ws://HOST:PORT/PATH

A dependency-free client for the consoles of smartmob processes
(/smartmob/process/<id>/console, /smartmob-agent/attach-console/<slug>) and
of Process Registry services (/process/execution/<id>/console). With
--until it exits 0 as soon as a line equal to LINE arrives, and 1 if the
console closes or the timeout passes first; without it, it prints until the
console closes or the timeout passes.
"""
import argparse
import base64
import os
import socket
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description="Print a cmbs WebSocket console.")
    ap.add_argument("url", help="ws://host:port/path")
    ap.add_argument("--until", help="exit 0 once this line arrives")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to watch (default 30)")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    if u.scheme != "ws" or not u.hostname:
        sys.exit("wsconsole: only ws://host[:port]/path URLs")
    deadline = time.monotonic() + a.timeout
    s = socket.create_connection((u.hostname, u.port or 80), timeout=a.timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    f = s.makefile("rb")
    status = f.readline().decode(errors="replace").strip()
    if " 101 " not in status + " ":
        sys.exit(f"wsconsole: handshake refused: {status}")
    while f.readline() not in (b"\r\n", b""):
        pass
    try:
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            head = f.read(2)
            if len(head) < 2:
                break
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(f.read(2), "big")
            elif n == 127:
                n = int.from_bytes(f.read(8), "big")
            data = f.read(n)
            if op == 8:  # close
                break
            if op == 1:
                line = data.decode(errors="replace")
                print(line, flush=True)
                if a.until is not None and line == a.until:
                    return 0
    except (socket.timeout, TimeoutError):
        pass
    finally:
        s.close()
    if a.until is not None:
        sys.exit(f"wsconsole: no line {a.until!r} within {a.timeout:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
