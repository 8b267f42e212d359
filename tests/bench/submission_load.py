#!/usr/bin/python3
"""tests/bench/submission_load.py — the load generator of the submission benchmark
(tests/bench/submission.sh, issue 6).

CLIENTS threads each open one SMTP session to 127.0.0.1:PORT (EHLO, STARTTLS with the
certificate checked against CERT, EHLO, AUTH PLAIN with the API key read from
KEY_FILE) and, once every client is authenticated, take message numbers from a shared
counter until MESSAGES have been sent in all: MAIL FROM, RCPT TO, DATA with a message
of SIZE octets (CRLF lines), all on the same session. Per message it measures the time
from sending DATA to the final reply (DATA, 354, the data, 250). smtplib is Python's
standard client, not ours; TLS is OpenSSL's (the GIL is released while it works).

Prints a human summary and last one line
  submission_load clients=N messages=N size=N accepted=N refused=N errors=N
                  seconds=S msgs_per_s=R p50_ms=X p90_ms=X p99_ms=X max_ms=X
                  setup_s=S client_cpu_pct=P start_epoch=E end_epoch=E
(start/end: when the first message began and the last one ended, Unix time).
Exit status 0 when every message got 250, 1 otherwise, 2 on a usage error.

    /usr/bin/python3 submission_load.py --port P --cert C --key-file K \
        [--clients 8] [--messages 2000] [--size 2048] [--from bench@bench.test] \
        [--to-domain example.com]
"""
import argparse
import itertools
import resource
import smtplib
import ssl
import sys
import threading
import time

MAX_ERRORS_SHOWN = 5


def build_message(n, size, sender, rcpt, run_id):
    """Message number n: a few headers and a body of 76-character lines, padded to
    exactly size octets (CRLF line ends, no line starting with a dot)."""
    head = ("From: Bench <%s>\r\nTo: <%s>\r\nSubject: submission bench %s #%d\r\n"
            "Message-ID: <bench-%s-%d@bench.test>\r\nDate: %s\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (sender, rcpt, run_id, n, run_id, n,
               time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())))
    room = size - len(head)
    if room < 3:
        raise ValueError("--size %d is too small for the headers (%d octets)" % (size, len(head)))
    text = ("The quick brown fox jumps over the lazy dog, message %d of the bench. " % n) * 2
    body = []
    left = room
    while left > 80:                        # full lines of 76 + CRLF, then one shorter
        body.append(text[:76] + "\r\n")
        left -= 78
    body.append(text[: left - 2] + "\r\n")
    msg = (head + "".join(body)).encode("ascii")
    assert len(msg) == size
    return msg


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []                       # seconds, DATA sent -> 250 received
        self.refused = 0
        self.errors = 0
        self.shown = []
        self.first_start = None
        self.last_end = None

    def note_error(self, what):
        with self.lock:
            if len(self.shown) < MAX_ERRORS_SHOWN:
                self.shown.append(what)


def connect(args, key, ctx):
    s = smtplib.SMTP("127.0.0.1", args.port, local_hostname="bench.client", timeout=60)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    s.login("apikey", key)
    return s


def client(idx, args, key, ctx, counter, counter_lock, barrier, stats, run_id, setup_ok):
    s = None
    try:
        s = connect(args, key, ctx)
        setup_ok[idx] = True
    except Exception as e:                  # never skip the barrier: main waits on it
        stats.note_error("client %d: session setup failed: %r" % (idx, e))
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return
    if s is None:
        return
    reconnects = 0
    rcpt_domain = args.to_domain
    while True:
        with counter_lock:
            n = next(counter)
        if n >= args.messages:
            break
        rcpt = "r%d@%s" % (n, rcpt_domain)
        msg = build_message(n, args.size, args.sender, rcpt, run_id)
        try:
            code, text = s.mail(args.sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, args.sender)
            code, text = s.rcpt(rcpt)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            t0 = time.perf_counter()
            t0_epoch = time.time()
            code, text = s.data(msg)          # DATA, 354, the message, final reply
            t1 = time.perf_counter()
            t1_epoch = time.time()
            with stats.lock:
                if stats.first_start is None or t0_epoch < stats.first_start:
                    stats.first_start = t0_epoch
                if stats.last_end is None or t1_epoch > stats.last_end:
                    stats.last_end = t1_epoch
                if code == 250:
                    stats.lat.append(t1 - t0)
                else:
                    stats.refused += 1
            if code != 250:
                stats.note_error("message %d: DATA answered %d %s" % (n, code, text.decode(errors="replace")))
                s.rset()
        except smtplib.SMTPDataError as e:      # DATA itself refused (no 354)
            with stats.lock:
                stats.refused += 1
            stats.note_error("message %d: DATA refused %d %s" % (n, e.smtp_code, e.smtp_error))
            s.rset()
        except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as e:
            with stats.lock:
                stats.refused += 1
            stats.note_error("message %d: %r" % (n, e))
            s.rset()
        except (OSError, smtplib.SMTPException) as e:
            with stats.lock:
                stats.errors += 1
            stats.note_error("message %d: session lost: %r" % (n, e))
            try:
                s.close()
            except OSError:
                pass
            reconnects += 1
            if reconnects > 3:
                stats.note_error("client %d: gave up after 3 reconnects" % idx)
                return
            try:
                s = connect(args, key, ctx)
            except (OSError, smtplib.SMTPException) as e2:
                stats.note_error("client %d: reconnect failed: %r" % (idx, e2))
                return
    try:
        s.quit()
    except (OSError, smtplib.SMTPException):
        pass


def pct(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, -(-len(sorted_vals) * p // 100))     # ceil(n * p / 100)
    return sorted_vals[int(k) - 1]


def main():
    ap = argparse.ArgumentParser(description="SMTP submission load generator")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True, help="CA file the server certificate is checked against")
    ap.add_argument("--key-file", required=True, help="file holding the API key (AUTH password)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--from", dest="sender", default="bench@bench.test")
    ap.add_argument("--to-domain", default="example.com")
    args = ap.parse_args()
    if args.clients < 1 or args.messages < 1:
        ap.error("--clients and --messages must be at least 1")
    with open(args.key_file) as f:
        key = f.read().strip()
    if not key:
        ap.error("%s is empty" % args.key_file)
    try:
        build_message(0, args.size, args.sender, "r0@" + args.to_domain, "x")
    except ValueError as e:
        ap.error(str(e))

    ctx = ssl.create_default_context(cafile=args.cert)
    run_id = "%x" % int(time.time() * 1000)
    stats = Stats()
    counter = itertools.count()
    counter_lock = threading.Lock()
    barrier = threading.Barrier(args.clients + 1)
    setup_ok = [False] * args.clients
    threads = [threading.Thread(target=client, daemon=True,
                                args=(i, args, key, ctx, counter, counter_lock, barrier, stats,
                                      run_id, setup_ok))
               for i in range(args.clients)]
    t_setup = time.perf_counter()
    for t in threads:
        t.start()
    barrier.wait()                     # every session is authenticated (or failed)
    setup_s = time.perf_counter() - t_setup
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)

    lat = sorted(stats.lat)
    accepted = len(lat)
    sent = accepted + stats.refused + stats.errors
    rate = accepted / wall if wall > 0 else 0.0
    ms = lambda v: v * 1000.0
    print("clients: %d of %d sessions authenticated over STARTTLS in %.2f s"
          % (sum(setup_ok), args.clients, setup_s))
    print("messages: %d of %d sent, %d accepted (250), %d refused, %d lost with the session"
          % (sent, args.messages, accepted, stats.refused, stats.errors))
    print("throughput: %.1f accepted messages/s over %.2f s (%d octets each)"
          % (rate, wall, args.size))
    if lat:
        print("time DATA -> 250: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms"
              % (ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)), ms(lat[-1]),
                 ms(sum(lat) / len(lat))))
    print("load generator CPU: %.0f%% of a core" % (cpu / wall * 100 if wall > 0 else 0))
    for e in stats.shown:
        print("error: " + e)
    print("submission_load clients=%d messages=%d size=%d accepted=%d refused=%d errors=%d "
          "seconds=%.3f msgs_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f "
          "setup_s=%.3f client_cpu_pct=%.0f start_epoch=%.3f end_epoch=%.3f"
          % (args.clients, args.messages, args.size, accepted, stats.refused, stats.errors,
             wall, rate, ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)),
             ms(lat[-1]) if lat else float("nan"), setup_s,
             cpu / wall * 100 if wall > 0 else 0,
             stats.first_start or 0.0, stats.last_end or 0.0))
    sys.stdout.flush()
    return 0 if accepted == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
