#!/usr/bin/python3
"""Interop check for ZMTP-CURVE: libzmq (pyzmq) as CURVE client or server.

Usage:
  curve.py req ENDPOINT COUNT FRAME...   a REQ client; prints the last reply
  curve.py router                        a ROUTER server on 127.0.0.1; prints
                                         its endpoint, then answers every
                                         envelope [id, mimetype, body] with
                                         [id, mimetype, "py:" + body] until
                                         stdin closes

Keys come from the environment, in Z85: CURVE_SERVERKEY (req: the key the
server must present), CURVE_PUBLIC and CURVE_SECRET (own key pair; req
without them is a NULL client). TIMEOUT_MS bounds each wait (default
10000). HEARTBEAT_MS (req) turns libzmq's ZMTP heartbeats on at that
interval, with a timeout of three intervals, and waits four intervals
between requests, so that PINGs must be answered for the socket to live. req exits 2 when no reply arrives in time. Uses only the standard
library and Debian's python3-zmq.
"""
import json
import os
import sys
import time

import zmq


def keys(sock, server):
    pub, sec = os.environ.get("CURVE_PUBLIC", ""), os.environ.get("CURVE_SECRET", "")
    if not pub:
        return
    sock.curve_publickey = pub.encode()
    sock.curve_secretkey = sec.encode()
    if server:
        sock.curve_server = True
    else:
        sock.curve_serverkey = os.environ["CURVE_SERVERKEY"].encode()


def req(ctx, timeout, endpoint, count, frames):
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout)
    sock.setsockopt(zmq.SNDTIMEO, timeout)
    keys(sock, False)
    heartbeat = int(os.environ.get("HEARTBEAT_MS", "0"))
    if heartbeat:
        sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * heartbeat)
    sock.connect(endpoint)
    try:
        reply = None
        for i in range(count):
            if heartbeat and i:
                time.sleep(4 * heartbeat / 1000)
            sock.send_multipart([f.encode() for f in frames])
            reply = sock.recv_multipart()
    except zmq.Again:
        print("no reply from %s within %d ms" % (endpoint, timeout), file=sys.stderr)
        return 2
    finally:
        sock.close()
    print(json.dumps([f.decode("utf-8", "replace") for f in reply]))
    return 0


def router(ctx):
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    keys(sock, True)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print("tcp://127.0.0.1:%d" % port, flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    try:
        while True:
            ready = dict(poller.poll(1000))
            if sys.stdin.fileno() in ready or sys.stdin in ready:
                if not sys.stdin.buffer.read1(1):
                    return 0
            if sock in ready:
                frames = sock.recv_multipart()
                if len(frames) < 4:
                    continue
                frames[-1] = b"py:" + frames[-1]
                sock.send_multipart(frames)
    finally:
        sock.close()


def main():
    timeout = int(os.environ.get("TIMEOUT_MS", "10000"))
    ctx = zmq.Context()
    try:
        if sys.argv[1] == "req":
            return req(ctx, timeout, sys.argv[2], int(sys.argv[3]), sys.argv[4:])
        return router(ctx)
    finally:
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
