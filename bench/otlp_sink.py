#!/usr/bin/env python3
"""A minimal OTLP/HTTP sink for benchmarks: accepts POST /v1/traces, counts bytes, answers 200."""
import http.server, sys


class Sink(http.server.BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        Sink.received += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
