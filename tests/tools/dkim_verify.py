#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with python3-dkim (an independent
implementation), looking keys up in a JSON "DNS" instead of the network.

usage: /usr/bin/python3 tests/tools/dkim_verify.py --keys KEYS.json [options] MESSAGE

  KEYS.json      {"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=MIIB...", ...}
  MESSAGE        a file, or - for stdin
  --smtp-data    MESSAGE is the body of an SMTP DATA command (dot-stuffed, ending
                 with the line "."): it is un-stuffed here first, and refused when
                 the terminator is missing, early, or not the last line
  --require-crlf refuse a message with a bare CR or LF (postmux sends CRLF only)
  --expect N     require exactly N DKIM-Signature fields (default: at least one)

Prints one line per signature ("sig 0 d=... s=... a=...: pass|fail (why)").
Exit status: 0 every signature verifies; 1 a signature fails, none is present,
or the message breaks --smtp-data / --require-crlf / --expect; 2 usage error.
Needs Debian's python3-dkim, which lives in /usr/bin/python3.
"""
import argparse
import json
import re
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("dkim_verify: python3-dkim is missing (run with /usr/bin/python3)\n")
    sys.exit(2)


def unstuff(data):
    """SMTP DATA body -> message (RFC 5321 4.5.2), checking the terminator."""
    if not data.endswith(b"\r\n"):
        raise ValueError("does not end with CRLF")
    lines = data[:-2].split(b"\r\n")
    out = []
    for i, line in enumerate(lines):
        if b"\r" in line or b"\n" in line:
            raise ValueError("bare CR or LF on line %d" % (i + 1))
        if line == b".":
            if i != len(lines) - 1:
                raise ValueError("line %d ends DATA early" % (i + 1))
            return b"".join(l + b"\r\n" for l in out)
        out.append(line[1:] if line.startswith(b".") else line)
    raise ValueError("no terminating line '.'")


def signature_tags(message, idx):
    """d=, s=, a= of the idx-th DKIM-Signature, for the report line."""
    d = dkim.DKIM(message)
    fields = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    tags = {}
    if idx < len(fields):
        unfolded = re.sub(rb"\s+", b"", fields[idx])
        for part in unfolded.split(b";"):
            if b"=" in part:
                k, v = part.split(b"=", 1)
                tags[k.decode()] = v.decode(errors="replace")
    return tags


def main():
    ap = argparse.ArgumentParser(add_help=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--smtp-data", action="store_true")
    ap.add_argument("--require-crlf", action="store_true")
    ap.add_argument("--expect", type=int, default=None)
    ap.add_argument("message")
    try:
        args = ap.parse_args()
    except SystemExit:
        return 2

    try:
        with open(args.keys) as f:
            keys = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
        if args.message == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.message, "rb") as f:
                data = f.read()
    except (OSError, ValueError) as e:
        sys.stderr.write("dkim_verify: %s\n" % e)
        return 2

    if args.smtp_data:
        try:
            data = unstuff(data)
        except ValueError as e:
            print("smtp data: %s" % e)
            return 1
    if args.require_crlf and re.search(rb"\r(?!\n)|(?<!\r)\n", data):
        print("message: bare CR or LF")
        return 1

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        txt = keys.get(name.lower().rstrip("."))
        return txt.encode() if txt is not None else None

    count = len(re.findall(rb"(?im)^dkim-signature[ \t]*:", data.split(b"\r\n\r\n", 1)[0]
                           if b"\r\n\r\n" in data else data))
    if args.expect is not None and count != args.expect:
        print("expected %d DKIM-Signature fields, found %d" % (args.expect, count))
        return 1
    if count == 0:
        print("no DKIM-Signature field")
        return 1

    ok = True
    for idx in range(count):
        tags = signature_tags(data, idx)
        label = "sig %d d=%s s=%s a=%s" % (idx, tags.get("d"), tags.get("s"), tags.get("a"))
        try:
            good = dkim.DKIM(data, minkey=1024).verify(idx=idx, dnsfunc=dnsfunc)
            why = ""
        except dkim.DKIMException as e:
            good, why = False, " (%s)" % e
        print("%s: %s%s" % (label, "pass" if good else "fail", why))
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
