#!/usr/bin/python3
"""A sending MTA for the inbound listener's tests: delivers FILE over SMTP and
prints every reply, one line each ("MAIL 250 ...", "RCPT <addr> 550 ...",
"DATA 250 ..."), so a test can check what was accepted.

  smtp_send.py PORT FROM RCPT[,RCPT...] FILE     FROM may be "" (the null sender)
  smtp_send.py --raw PORT FROM RCPT FILE         the file's bytes as they are (bare
                                                 LFs stay bare), then CRLF.CRLF
  smtp_send.py --conns N PORT                    opens N connections at once and
                                                 prints each greeting's first line
  smtp_send.py --starttls PORT FROM RCPT FILE    STARTTLS first (no verification)

Always exits 0 when the server could be reached: the replies are the result.
"""
import smtplib
import socket
import ssl
import sys
import time


def reply_line(code, msg):
    text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg)
    return "%d %s" % (code, " ".join(text.split()))


def send(port, sender, rcpts, data, raw=False, starttls=False):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("sender.test")
    if starttls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        code, msg = s.starttls(context=ctx)
        print("STARTTLS " + reply_line(code, msg))
        s.ehlo("sender.test")
    code, msg = s.mail(sender)
    print("MAIL " + reply_line(code, msg))
    ok = 0
    for r in rcpts:
        code, msg = s.rcpt(r)
        print("RCPT <%s> %s" % (r, reply_line(code, msg)))
        ok += code == 250
    if not ok:
        s.quit()
        return
    if raw:
        code, msg = s.docmd("DATA")
        print("DATA354 " + reply_line(code, msg))
        if code != 354:
            return
        s.sock.sendall(data + b"\r\n.\r\n")
        code, msg = s.getreply()
    else:
        try:
            code, msg = s.data(data)
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
    print("DATA " + reply_line(code, msg))
    try:
        s.quit()
    except smtplib.SMTPException:
        pass


def conns(port, n):
    socks = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(c)
        buf = b""
        while b"\n" not in buf:
            chunk = c.recv(4096)
            if not chunk:
                break
            buf += chunk
        print(buf.split(b"\r\n")[0].decode("latin-1"))
    time.sleep(0.2)
    for c in socks:
        c.close()


def main(argv):
    raw = starttls = False
    if argv and argv[0] == "--conns":
        conns(int(argv[2]), int(argv[1]))
        return
    if argv and argv[0] == "--raw":
        raw, argv = True, argv[1:]
    if argv and argv[0] == "--starttls":
        starttls, argv = True, argv[1:]
    port, sender, rcpts, path = int(argv[0]), argv[1], argv[2].split(","), argv[3]
    with open(path, "rb") as f:
        data = f.read()
    if not raw:     # CRLF line ends, as an MTA sends (smtplib leaves bytes alone)
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    send(port, sender, rcpts, data, raw=raw, starttls=starttls)


if __name__ == "__main__":
    main(sys.argv[1:])
