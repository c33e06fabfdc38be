"""A keep-alive HTTP/1.1 upstream built on Python's stock http.server.

Like many real upstreams it never reads a body sent with GET, HEAD,
OPTIONS or DELETE: the bytes stay in the connection and are parsed as the
next request. It prints "READY <port>" once listening, then one JSON line
per request it parsed: the connection number, method, path, the identity
headers and Connection. /admin/* answers "ADMIN PAGE for <subject>".
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
conns = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            conns[0] += 1
            self.conn_id = conns[0]

    def log_message(self, *args):
        pass

    def record(self, body=b""):
        h = self.headers
        line = {
            "conn": self.conn_id,
            "method": self.command,
            "path": self.path,
            "subject": h.get("X-Auth-Subject", ""),
            "roles": h.get("X-Auth-Roles", ""),
            "connection": h.get("Connection", ""),
            "content_length": h.get("Content-Length", ""),
            "transfer_encoding": h.get("Transfer-Encoding", ""),
            "body": body.decode("latin-1"),
        }
        with lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    def answer(self):
        if self.path.startswith("/admin"):
            text = "ADMIN PAGE for " + self.headers.get("X-Auth-Subject", "")
        else:
            text = "page " + self.path
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # The methods without body semantics ignore any body, as the stock
    # handlers and many applications do.
    def do_GET(self):
        self.record()
        self.answer()

    do_HEAD = do_GET
    do_OPTIONS = do_GET
    do_DELETE = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        self.record(self.rfile.read(n))
        self.answer()

    do_PUT = do_POST


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    sys.stdout.write("READY %d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
