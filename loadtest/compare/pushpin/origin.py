#!/usr/bin/env python3
"""GRIP origin for the Pushpin anchor of the comparison (loadtest/compare/run.sh).

GET /sub/{ch} is answered with `Grip-Hold: stream` and `Grip-Channel: {ch}`: Pushpin keeps the client's
connection open and streams what is published to the channel through its control API
(POST http://127.0.0.1:5561/publish/). The origin is touched once per subscribe, never per message.
"""
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUB = re.compile(r"^/sub/(\w+)$")


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        m = SUB.match(self.path)
        if not m:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", m.group(1))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8098
    ThreadingHTTPServer.request_queue_size = 4096
    ThreadingHTTPServer(("127.0.0.1", port), Origin).serve_forever()
