#!/usr/bin/python3
"""An SMTP relay for the relay client's pipelining tests: it offers PIPELINING
and, after each end of data ("."), holds its reply until the client's next
command arrives (or --hold-s passes), so the log shows whether the client put
its next transaction's commands right behind the end of data (RFC 2920 3.1).

    pipe_relay.py --port-file F --log L [--hold-s S]
                  [--first-dot hold|drop|421]   (first connection, first end of data)

Log lines (one per event, in order):
    CONNECT n                 a connection accepted (n from 1)
    DOT n                     an end of data read on connection n
    AHEAD n MAIL              the next MAIL FROM arrived before the reply to "."
    ALONE n                   nothing followed the "." within --hold-s
    MAIL n <addr> | RCPT n <addr> | DATA n | RSET n | QUIT n
    DROP n | 421 n            --first-dot: what connection 1 did at its first "."
    MSG n bytes=B             a message stored (250 sent)

--first-dot drop: connection 1 reads its first "." and the group behind it,
then closes without a reply; 421: it answers the first "." with 421 and closes;
250-421: it answers the first "." with 250, then at once 421, and closes.
Every other end of data gets "250 2.0.0 queued".
"""
import argparse
import os
import socket
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--hold-s", type=float, default=1.0)
ap.add_argument("--first-dot", choices=["hold", "drop", "421", "250-421"], default="hold")
args = ap.parse_args()
lock = threading.Lock()
conns = 0


def event(line):
    with lock, open(args.log, "a") as f:
        f.write(line + "\n")


class Conn:
    def __init__(self, sock, n):
        self.sock, self.n, self.buf = sock, n, b""
        self.sock.settimeout(args.hold_s)

    def line(self, hold=False):
        """The next line (without CRLF); None at EOF; "" on a timeout while holding."""
        while b"\r\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if hold:
                    return ""
                continue
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def send(self, text):
        self.sock.sendall(text.encode())

    def close_after(self, text):
        """Sends text and closes with a FIN, reading what the client still sends
        (its pipelined group) so that unread input does not turn the close into
        a reset that could discard text before the client reads it."""
        self.send(text)
        self.sock.shutdown(socket.SHUT_WR)
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def run(self):
        n = self.n
        self.send("220 pipe_relay ESMTP\r\n")
        dots = 0
        held = False          # a "." read, its reply not sent yet
        while True:
            ln = self.line(hold=held)
            if ln is None:
                return
            if held:
                held = False
                if ln == "":
                    event(f"ALONE {n}")
                    self.send("250 2.0.0 queued\r\n")
                    continue
                if ln.upper().startswith("MAIL"):
                    event(f"AHEAD {n} MAIL")
                if n == 1 and dots == 1 and args.first_dot == "250-421":
                    event(f"421 {n}")
                    self.close_after("250 2.0.0 queued\r\n421 4.3.2 closing for maintenance\r\n")
                    return
                if n == 1 and dots == 1 and args.first_dot == "drop":
                    # Read the rest of the group (up to DATA), then vanish.
                    while not ln.upper().startswith("DATA"):
                        ln = self.line()
                        if ln is None:
                            return
                    event(f"DROP {n}")
                    return
                self.send("250 2.0.0 queued\r\n")
            verb = ln.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.send("250-pipe_relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                event(f"MAIL {n} {ln[10:]}")
                self.send("250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                event(f"RCPT {n} {ln[8:]}")
                self.send("250 2.1.5 ok\r\n")
            elif verb == "RSET":
                event(f"RSET {n}")
                self.send("250 2.0.0 ok\r\n")
            elif verb == "DATA":
                event(f"DATA {n}")
                self.send("354 go ahead\r\n")
                size = 0
                while True:
                    body = self.line()
                    if body is None:
                        return
                    if body == ".":
                        break
                    size += len(body) + 2
                dots += 1
                event(f"DOT {n}")
                if n == 1 and dots == 1 and args.first_dot == "421":
                    event(f"421 {n}")
                    self.close_after("421 4.3.2 closing for maintenance\r\n")
                    return
                event(f"MSG {n} bytes={size}")
                held = True
            elif verb == "QUIT":
                event(f"QUIT {n}")
                self.send("221 2.0.0 bye\r\n")
                return
            else:
                self.send("502 5.5.2 not here\r\n")


def serve(sock, n):
    with sock:
        try:
            Conn(sock, n).run()
        except OSError:
            pass


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
open(args.log, "a").close()
with open(args.port_file + ".tmp", "w") as f:
    f.write(f"{srv.getsockname()[1]}\n")
os.rename(args.port_file + ".tmp", args.port_file)
while True:
    c, _ = srv.accept()
    conns += 1
    event(f"CONNECT {conns}")
    threading.Thread(target=serve, args=(c, conns), daemon=True).start()
