#!/usr/bin/python3
"""tests/bench/submission_memory.py — the load of the submission memory bench
(tests/bench/submission_memory.sh, docs/submission.md "Memory").

SESSIONS "big" clients each open a session to 127.0.0.1:PORT (EHLO, STARTTLS checked
against CERT, AUTH PLAIN with the key from KEY_FILE), MAIL, RCPT, DATA, and stream
SIZE octets of message (998-octet lines) all at once. Once every big client has sent
half of its data, OTHERS "normal" clients, one after the other, each send one small
message on a session of their own and note the reply. The big clients, once done
streaming and once the normal clients are done (so the two overlap), and once
GO_FILE exists when --go-file is given (the caller reads the workers' peak RSS
first):
  --end terminate   send the terminator and note the reply (250, or 452 4.3.1 when
                    the worker's memory budget bit);
  --end close       close the connection without it (an unterminated DATA).

Last line:
  submission_memory end=E sessions=N size=N big_250=N big_452=N big_other=N
                    others=N others_250=N others_failed=N seconds=S
Exit status 0 when every normal client got 250, 1 otherwise, 2 on a usage error.
"""
import argparse
import os
import smtplib
import ssl
import sys
import threading
import time


def connect(args, key, ctx):
    s = smtplib.SMTP("127.0.0.1", args.port, local_hostname="bench.client", timeout=600)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    s.login("apikey", key)
    return s


def big(args, key, ctx, i, half, full, others_done, results):
    signalled = {"half": False, "full": False}

    def signal(what, sem):
        if not signalled[what]:
            signalled[what] = True
            sem.release()
    try:
        s = connect(args, key, ctx)
        s.mail(args.sender)
        s.rcpt("big%d@%s" % (i, args.to_domain))
        code, _ = s.docmd("DATA")
        if code != 354:
            results[i] = "DATA %d" % code
            return
        s.send(("From: <%s>\r\nTo: <big%d@%s>\r\nSubject: memory bench %d\r\n\r\n"
                % (args.sender, i, args.to_domain, i)).encode())
        chunk = (b"y" * 998 + b"\r\n") * 64
        sent = 0
        while sent < args.size:
            s.send(chunk)
            sent += len(chunk)
            if sent >= args.size // 2:
                signal("half", half)
        signal("full", full)
        others_done.wait()
        if args.end == "close":
            s.close()
            results[i] = "closed"
            return
        s.send(b".\r\n")
        code, text = s.getreply()
        results[i] = "%d %s" % (code, text.decode(errors="replace").split(" ")[0])
        s.quit()
    except (OSError, smtplib.SMTPException) as e:
        results[i] = "error %s" % e
    finally:
        signal("half", half)
        signal("full", full)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--size", type=int, default=24 * 1000 * 1000)
    ap.add_argument("--others", type=int, default=20)
    ap.add_argument("--end", choices=("terminate", "close"), default="terminate")
    ap.add_argument("--go-file", default="")
    ap.add_argument("--from", dest="sender", default="bench@bench.test")
    ap.add_argument("--to-domain", default="example.com")
    args = ap.parse_args()
    if args.sessions < 1 or args.size < 1 or args.others < 1:
        ap.error("--sessions, --size and --others must be positive")
    key = open(args.key_file).read().strip()
    ctx = ssl.create_default_context(cafile=args.cert)

    t0 = time.monotonic()
    half = threading.Semaphore(0)
    full = threading.Semaphore(0)
    others_done = threading.Event()
    results = [None] * args.sessions
    threads = [threading.Thread(target=big, args=(args, key, ctx, i, half, full, others_done, results))
               for i in range(args.sessions)]
    for t in threads:
        t.start()
    for _ in range(args.sessions):
        half.acquire()
    print("# every big session has sent half its data (%.1f s); %d normal clients now"
          % (time.monotonic() - t0, args.others), flush=True)
    ok, failed = 0, []
    for n in range(args.others):
        msg = ("From: <%s>\r\nTo: <other%d@%s>\r\nSubject: memory bench other %d\r\n\r\nhello\r\n"
               % (args.sender, n, args.to_domain, n)).encode()
        try:
            s = connect(args, key, ctx)
            s.sendmail(args.sender, ["other%d@%s" % (n, args.to_domain)], msg)
            s.quit()
            ok += 1
        except (OSError, smtplib.SMTPException) as e:
            failed.append(str(e))
    print("# normal clients done (%.1f s): %d of %d got 250%s" % (
        time.monotonic() - t0, ok, args.others, ("; first failure: " + failed[0]) if failed else ""),
        flush=True)
    for _ in range(args.sessions):
        full.acquire()
    print("# every big session has streamed all its data (%.1f s)" % (time.monotonic() - t0),
          flush=True)
    while args.go_file and not os.path.exists(args.go_file):
        time.sleep(0.05)
    others_done.set()
    for t in threads:
        t.join()
    b250 = sum(1 for r in results if r and r.startswith("250"))
    b452 = sum(1 for r in results if r and r.startswith("452 4.3.1"))
    bother = args.sessions - b250 - b452 if args.end == "terminate" else 0
    for i, r in enumerate(results):
        print("# big session %d: %s" % (i, r))
    print("submission_memory end=%s sessions=%d size=%d big_250=%d big_452=%d big_other=%d "
          "others=%d others_250=%d others_failed=%d seconds=%.1f"
          % (args.end, args.sessions, args.size, b250, b452, bother, args.others, ok,
             len(failed), time.monotonic() - t0))
    return 0 if ok == args.others else 1


if __name__ == "__main__":
    sys.exit(main())
