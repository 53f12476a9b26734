"""A round-robin HTTP reverse proxy, to try several cmbsd behind one address
on one machine (README, "Several servers on one CouchDB"):

    python3 testdata/readme/roundrobin.py LISTEN_PORT BACKEND_PORT...

It listens on 127.0.0.1:LISTEN_PORT and sends each request to the next
backend on 127.0.0.1, in turn, naming it in the X-Backend response header.
For trying only (it buffers whole responses, so /console/events does not
stream through it): in production use a real load balancer.
"""
import http.client
import http.server
import itertools
import sys
import threading

port, backends = int(sys.argv[1]), itertools.cycle(sys.argv[2:])
lock = threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        with lock:
            backend = next(backends)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        conn = http.client.HTTPConnection("127.0.0.1", int(backend), timeout=120)
        try:
            conn.request(self.command, self.path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            self.send_error(502, "backend %s: %s" % (backend, e))
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.send_header("X-Backend", "127.0.0.1:" + backend)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = forward

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
