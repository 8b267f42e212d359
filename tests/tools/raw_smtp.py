#!/usr/bin/python3
"""A misbehaving "SMTP server" for the relay client's tests: on every connection
it sends the bytes given with --send (Python escapes allowed, e.g.
'220-a\\r\\n250 b\\r\\n'), then logs whatever the client sends, until the client
closes. It listens on 127.0.0.1 on a port the kernel picks and writes the port
to --port-file once it accepts connections.

    raw_smtp.py --port-file F --send BYTES --log L
"""
import argparse
import os
import socket
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--send", required=True)
ap.add_argument("--log", required=True)
args = ap.parse_args()
payload = args.send.encode("latin-1").decode("unicode_escape").encode("latin-1")
lock = threading.Lock()


def serve(conn):
    with conn:
        conn.sendall(payload)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            with lock, open(args.log, "ab") as f:
                f.write(data)


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
open(args.log, "ab").close()
with open(args.port_file + ".tmp", "w") as f:
    f.write(f"{srv.getsockname()[1]}\n")
os.rename(args.port_file + ".tmp", args.port_file)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
