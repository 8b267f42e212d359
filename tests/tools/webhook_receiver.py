#!/usr/bin/env python3
"""A webhook endpoint for the tests (tests/integration/test_webhooks.sh).

Listens on 127.0.0.1 (a free port unless --port is given, written to
--port-file once listening) and appends one JSON line per request to --log:
  {"t": <unix time>, "path": "/x", "headers": {lowercased name: value},
   "body": "<the body as text>", "status": <what it answered, null = hung>}

What it answers, decided per request:
  --fail-for SECONDS   500 for the first SECONDS after start, then 200
  --control FILE       if FILE exists its first word rules: "ok" (200),
                       "fail" (500), "hang" (answer nothing until the client
                       gives up, or at most 120 s), or a number (that status)
  otherwise            200
A line is logged as the request arrives for hung requests (status null), else
once answered. Stops on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
START = time.time()
LOCK = threading.Lock()


def mode():
    if ARGS.control and os.path.exists(ARGS.control):
        with open(ARGS.control) as f:
            words = f.read().split()
        if words:
            return words[0]
    if ARGS.fail_for and time.time() - START < ARGS.fail_for:
        return "fail"
    return "ok"


def record(entry):
    line = json.dumps(entry, ensure_ascii=False)
    with LOCK:
        with open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the log file is the record
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        entry = {
            "t": time.time(),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        m = mode()
        if m == "hang":
            entry["status"] = None
            record(entry)
            end = time.time() + 120
            while time.time() < end and mode() == "hang":
                time.sleep(0.2)
            self.close_connection = True
            return
        status = 500 if m == "fail" else 200 if m == "ok" else int(m)
        entry["status"] = status
        record(entry)
        out = b"ok\n" if status < 300 else b"failing on purpose\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--fail-for", type=float, default=0)
    p.add_argument("--control")
    ARGS = p.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.port_file)
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
