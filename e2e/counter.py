#!/usr/bin/env python3
"""The blog scenario's workload: a tiny HTTP counter that keeps what it is sent in memory.

GET /             -> the request count
GET /create?NAME  -> creates /home/counter/NAME (a changed file in the checkpoint)
GET /secret?VALUE -> keeps VALUE in a Python object (what the memory search must find)
"""

import http.server
import os
import sys

count = 0
kept = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        path, _, arg = self.path.partition("?")
        if path == "/create" and arg:
            with open(os.path.join("/home/counter", os.path.basename(arg)), "w") as f:
                f.write("created by the counter\n")
        elif path == "/secret" and arg:
            kept.append(arg)
        body = f"counter: {count}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write(f"{self.path}\n")
        sys.stdout.flush()


http.server.HTTPServer(("0.0.0.0", 8088), Handler).serve_forever()
