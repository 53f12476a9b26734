#!/usr/bin/python3
"""Interop check for cmbs/transport: a plain libzmq REQ client (pyzmq).

Usage: req_client.py ENDPOINT ID MIMETYPE BODY [COUNT]

Sends the 3-frame envelope [ID, MIMETYPE, BODY] COUNT times (default 1) over
one REQ socket (REQ adds the empty delimiter itself) and prints the frames of
the last reply as a JSON list of UTF-8 strings. Uses only the standard
library and Debian's python3-zmq. Exits 2 when no reply arrives in time.
"""
import json
import sys

import zmq


def main():
    endpoint, ident, mimetype, body = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
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
            sock.send_multipart([ident.encode(), mimetype.encode(), body.encode()])
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
