#!/usr/bin/python3
"""A TLS-capable SMTP relay for the relay client's tests, built on Debian's
python3-aiosmtpd (an SMTP server postmux did not write). Run with
/usr/bin/python3 (the interpreter that has aiosmtpd).

    tls_relay.py --port-file F --cert C --key K --dir D --log L
                 [--user U --password P] [--mode MODE]
                 [--size-limit N] [--no-smtputf8] [--login-only] [--pipelining]
                 [--log-sessions]

It listens on 127.0.0.1 on a port the kernel picks and writes that port to
--port-file once it accepts connections. Every message is stored as
D/msg.N (envelope lines "X-Mail-From:" / "X-Rcpt-To:" first), and every event
goes to the log L, one line each, with whether the connection was under TLS:
    EHLO name tls=no | AUTH user=U ok|refused tls=yes | RSET tls=no | MAIL <a> tls=yes |
    RCPT <b> tls=yes | DATA bytes=N tls=yes | STARTTLS refused | STARTTLS injected

Addresses choose their fate: a sender or recipient whose local part starts
with "temp" gets a 4xx, with "perm" a 5xx; everything else is accepted.
--pipelining announces PIPELINING (aiosmtpd reads commands in order anyway).
--log-sessions adds, for every message, the connection it came on (egress pools,
docs/delivery.md):
    SESSION peer=SOURCE_IP:PORT ehlo=NAME mail=<a> tls=yes|no

Modes:
  starttls   (default) STARTTLS offered and required; AUTH (when --user is
             given) required and only after TLS
  implicit   TLS from the first byte (port-465 style); AUTH as above
  refuse     STARTTLS offered but answered "454"; nothing is required, so a
             client that went on in clear text would show MAIL/RCPT in the log
  absent     STARTTLS not offered at all; nothing required
  inject     like starttls, but the "220" to STARTTLS is followed, in the
             same write, by "250 injected-after-starttls": bytes a client must
             discard (RFC 3207 §4.2)
"""
import argparse
import asyncio
import os
import signal
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--size-limit", type=int, default=33554432,
                    help="announced as SIZE; larger messages are refused")
    ap.add_argument("--no-smtputf8", action="store_true", help="do not offer SMTPUTF8")
    ap.add_argument("--login-only", action="store_true", help="offer AUTH LOGIN but not PLAIN")
    ap.add_argument("--pipelining", action="store_true", help="announce PIPELINING")
    ap.add_argument("--log-sessions", action="store_true",
                    help="log the source address and EHLO name of each message's connection")
    ap.add_argument("--mode", default="starttls",
                    choices=["starttls", "implicit", "refuse", "absent", "inject"])
    return ap.parse_args()


ARGS = parse_args()
LOG = open(ARGS.log, "a", buffering=1)
COUNT = 0


def tls_of(server):
    return "yes" if server.transport.get_extra_info("ssl_object") is not None else "no"


def event(line):
    LOG.write(line + "\n")


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        event(f"EHLO {hostname} tls={tls_of(server)}")
        session.host_name = hostname
        if ARGS.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RSET(self, server, session, envelope):
        event(f"RSET tls={tls_of(server)}")
        return "250 2.0.0 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        event(f"MAIL <{address}> {' '.join(mail_options)} tls={tls_of(server)}".replace("  ", " "))
        if address.startswith("temp"):
            return "451 4.3.0 sender deferred by tls_relay"
        if address.startswith("perm"):
            return "550 5.7.1 sender refused by tls_relay"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        event(f"RCPT <{address}> tls={tls_of(server)}")
        if address.startswith("temp"):
            return "450 4.2.0 mailbox busy, try later"
        if address.startswith("perm"):
            return "550 5.1.1 no such user here"
        if address.startswith("full"):
            return "552 5.2.2 mailbox full, over quota"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        global COUNT
        COUNT += 1
        data = envelope.original_content or b""
        event(f"DATA bytes={len(data)} tls={tls_of(server)}")
        if ARGS.log_sessions:
            peer = server.transport.get_extra_info("peername") or ("?", 0)
            event(f"SESSION peer={peer[0]}:{peer[1]} ehlo={session.host_name} "
                  f"mail=<{envelope.mail_from}> tls={tls_of(server)}")
        path = os.path.join(ARGS.dir, f"msg.{COUNT}")
        with open(path + ".tmp", "wb") as f:
            f.write(f"X-Mail-From: <{envelope.mail_from}>\r\n".encode())
            for r in envelope.rcpt_tos:
                f.write(f"X-Rcpt-To: <{r}>\r\n".encode())
            f.write(data)
        os.rename(path + ".tmp", path)
        return f"250 2.0.0 Ok: queued as tls-relay-{COUNT}"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode(errors="replace") == ARGS.user
          and auth_data.password.decode(errors="replace") == ARGS.password)
    user = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else "?"
    event(f"AUTH {mechanism} user={user} {'ok' if ok else 'refused'} tls={tls_of(server)}")
    return AuthResult(success=ok, handled=False)   # handled=False: aiosmtpd answers 535


class RelaySMTP(SMTP):
    async def smtp_STARTTLS(self, arg):
        if ARGS.mode == "refuse":
            event("STARTTLS refused")
            await self.push("454 4.7.0 TLS not available due to local problem")
            return
        if ARGS.mode == "inject":
            event("STARTTLS injected")
            # The 220 and a forged reply in one write: the forged line is what a
            # man in the middle could slip in before the handshake.
            self.transport.write(b"220 2.0.0 Ready to start TLS\r\n250 injected-after-starttls\r\n")
            self.push = self._push_skip_once
        return await super().smtp_STARTTLS(arg)

    async def _push_skip_once(self, status):
        # The base class pushes its own "220" next: it was already sent above.
        del self.push
        return


def server_context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    return ctx


def make_protocol():
    ctx = server_context()
    starttls = ARGS.mode in ("starttls", "inject", "refuse")
    required = ARGS.mode in ("starttls", "inject")
    kw = dict(hostname="tls-relay.test", ident="tls_relay.py",
              enable_SMTPUTF8=not ARGS.no_smtputf8, decode_data=False,
              data_size_limit=ARGS.size_limit)
    if ARGS.user:
        # Implicit TLS is invisible to aiosmtpd's STARTTLS bookkeeping: the whole
        # connection is TLS there, so AUTH needs no further TLS check.
        kw.update(authenticator=authenticator, auth_required=ARGS.mode != "refuse",
                  auth_require_tls=ARGS.mode != "implicit",
                  auth_exclude_mechanism=["PLAIN"] if ARGS.login_only else None)
    if starttls:
        kw.update(tls_context=ctx, require_starttls=required)
    return RelaySMTP(Handler(), **kw)


async def main():
    os.makedirs(ARGS.dir, exist_ok=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        make_protocol, sock=sock,
        ssl=server_context() if ARGS.mode == "implicit" else None)
    port = sock.getsockname()[1]
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
