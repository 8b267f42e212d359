#!/usr/bin/env python3
"""A small SMTP server standing in for many MX hosts (tests/integration/test_mx*.sh).

It listens on several loopback addresses on one port ([mx] port), and writes one
JSON line per event to --log:

  {"ev": "connect", "local": "127.0.0.2", "peer": "127.0.0.1", "conn": 7, "conc": 2}
  {"ev": "ehlo", "local": ..., "conn": 7, "name": "mta.example"}
  {"ev": "mail", "local": ..., "conn": 7, "from": "news@acme.test"}
  {"ev": "rcpt", "local": ..., "conn": 7, "rcpt": "a@x.test", "code": 250}
  {"ev": "message", "local": ..., "conn": 7, "n": 1, "rcpts": [...], "size": 1234}
  {"ev": "close", "local": ..., "conn": 7}

"conc" is the number of sessions open on that address after this one connected;
"n" is the message's number on its connection; every line has "t", the time it was
written (seconds since the epoch, float). Behaviour per address:
  --greet ADDR=REPLY       greeting instead of 220 (e.g. "421 4.3.2 busy"), then close
  --starttls-broken ADDR   offers STARTTLS, answers 220, then sends junk and closes
                           (a client must not carry on in clear text)
  --starttls ADDR          offers STARTTLS and does it (--cert/--key); every later
                           event of the session carries "tls": the protocol version
  --rcpt-fail PREFIX=REPLY a recipient whose local part starts with PREFIX gets REPLY
  --data-delay SECONDS     wait before answering the end of data (holds sessions open)
  --silent ADDR            accepts and never says a word (a black-holing MX); the
                           connection stays open until the client closes it
  --starttls-refused ADDR  offers STARTTLS and answers it 454 (logged as
                           "starttls_refused"), then carries on in clear text
Port 0 picks a free port for the first address and uses it for the others;
--port-file gets the port once every address listens.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--greet", action="append", default=[])
    ap.add_argument("--starttls-broken", action="append", default=[])
    ap.add_argument("--starttls", action="append", default=[])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--rcpt-fail", action="append", default=[])
    ap.add_argument("--data-delay", type=float, default=0.0)
    ap.add_argument("--silent", action="append", default=[])
    ap.add_argument("--starttls-refused", action="append", default=[])
    a = ap.parse_args()
    greet = dict(g.split("=", 1) for g in a.greet)
    rcpt_fail = [tuple(r.split("=", 1)) for r in a.rcpt_fail]
    logf = open(a.log, "a", buffering=1)
    tls_ctx = None
    if a.starttls:
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ctx.load_cert_chain(a.cert, a.key)
    conc = {}
    counter = [0]

    def log(**kw):
        kw["t"] = time.time()
        logf.write(json.dumps(kw) + "\n")

    async def handle(reader, writer):
        local = writer.get_extra_info("sockname")[0]
        peer = writer.get_extra_info("peername")[0]
        counter[0] += 1
        conn = counter[0]
        conc[local] = conc.get(local, 0) + 1
        log(ev="connect", local=local, peer=peer, conn=conn, conc=conc[local])

        tls = [None]

        def send(line):
            writer.write((line + "\r\n").encode())

        def log_s(**kw):
            if tls[0]:
                kw["tls"] = tls[0]
            log(**kw)

        try:
            if local in a.silent:
                while await reader.read(4096):
                    pass
                return
            if local in greet:
                send(greet[local])
                await writer.drain()
                return
            send("220 %s ESMTP mx_server" % local)
            rcpts, nmsg, mail = [], 0, False
            while True:
                raw = await asyncio.wait_for(reader.readline(), 60)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    log(ev="ehlo", local=local, conn=conn, name=line[5:].strip())
                    ext = ["PIPELINING", "8BITMIME", "SIZE 52428800"]
                    offers = a.starttls_broken + a.starttls + a.starttls_refused
                    if local in offers and not tls[0]:
                        ext.append("STARTTLS")
                    lines = ["250-" + local] + ["250-" + e for e in ext[:-1]] + ["250 " + ext[-1]]
                    send("\r\n".join(lines))
                elif verb == "STAR" and local in a.starttls_broken:
                    send("220 2.0.0 go ahead")
                    await writer.drain()
                    writer.write(b"this is not a TLS handshake\r\n" * 4)
                    await writer.drain()
                    log(ev="starttls_broken", local=local, conn=conn)
                    return
                elif verb == "STAR" and local in a.starttls_refused:
                    log(ev="starttls_refused", local=local, conn=conn)
                    send("454 4.7.0 TLS not available due to local problem")
                elif verb == "STAR" and local in a.starttls and not tls[0]:
                    send("220 2.0.0 ready to start TLS")
                    await writer.drain()
                    await writer.start_tls(tls_ctx)
                    tls[0] = writer.get_extra_info("ssl_object").version()
                    log_s(ev="tls", local=local, conn=conn)
                    mail, rcpts = False, []
                    continue
                elif verb == "MAIL":
                    mail, rcpts = True, []
                    log_s(ev="mail", local=local, conn=conn,
                          **{"from": line[line.find("<") + 1:line.rfind(">")]})
                    send("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = line[line.find("<") + 1:line.rfind(">")]
                    reply = "250 2.1.5 ok"
                    for prefix, r in rcpt_fail:
                        if addr.split("@")[0].startswith(prefix):
                            reply = r
                    if reply.startswith("250"):
                        rcpts.append(addr)
                    log_s(ev="rcpt", local=local, conn=conn, rcpt=addr, code=int(reply[:3]))
                    send(reply)
                elif verb == "DATA":
                    if not mail or not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    send("354 go ahead")
                    await writer.drain()
                    size = 0
                    while True:
                        d = await asyncio.wait_for(reader.readline(), 60)
                        if not d:
                            return
                        if d == b".\r\n":
                            break
                        size += len(d)
                    if a.data_delay:
                        await asyncio.sleep(a.data_delay)
                    nmsg += 1
                    log_s(ev="message", local=local, conn=conn, n=nmsg, rcpts=rcpts, size=size)
                    send("250 2.0.0 queued as %d.%d" % (conn, nmsg))
                    mail, rcpts = False, []
                elif verb == "RSET":
                    mail, rcpts = False, []
                    send("250 2.0.0 ok")
                elif verb == "NOOP":
                    send("250 2.0.0 ok")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    await writer.drain()
                    return
                else:
                    send("502 5.5.2 command not recognised")
                await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            conc[local] -= 1
            log(ev="close", local=local, conn=conn)
            try:
                writer.close()
            except Exception:
                pass

    async def run():
        port = a.port
        servers = []
        for addr in a.listen:
            s = await asyncio.start_server(handle, addr, port)
            if port == 0:
                port = s.sockets[0].getsockname()[1]
            servers.append(s)
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
