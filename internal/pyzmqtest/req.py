#!/usr/bin/python3
"""Interop check: a plain libzmq REQ client (pyzmq).

Usage: req.py ENDPOINT COUNT FRAME...

Sends FRAME... as one multipart message COUNT times over one REQ socket
(REQ adds the empty delimiter itself; an envelope is the three frames ID
MIMETYPE BODY) and prints the frames of the last reply as a JSON list of
UTF-8 strings. Uses only the standard library and Debian's python3-zmq.
Exits 2 when no reply arrives within 10 s.
"""
import json
import sys

import zmq


def main():
    endpoint, count, frames = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    # Never hang the Go test: bounded send/receive, nothing kept on close.
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.setsockopt(zmq.SNDTIMEO, 10000)
    sock.connect(endpoint)
    try:
        reply = None
        for _ in range(count):
            sock.send_multipart([f.encode() for f in frames])
            reply = sock.recv_multipart()
    except zmq.Again:
        print("no reply from %s within 10s" % endpoint, file=sys.stderr)
        return 2
    finally:
        sock.close()
        ctx.term()
    print(json.dumps([f.decode("utf-8", "replace") for f in reply]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
