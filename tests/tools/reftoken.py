#!/usr/bin/env python3
"""Recipient tokens for tests, written apart from lib/reftoken.c from its
documented format (docs/feedback.md "Recipient tokens"), so a test that sends
mail and a test that forges reports agree with postmuxd only if both follow
the document.

  reftoken.py make  MASTER_KEY_FILE b|u MSG_ID IDX   -> prints the token
  reftoken.py check MASTER_KEY_FILE b|u TOKEN        -> prints "MSG_ID IDX", exit 1 if forged
"""
import base64
import hashlib
import hmac
import sys


def key_of(path):
    with open(path, "rb") as f:
        master = base64.b64decode(f.read().strip())
    return hmac.new(master, b"postmux ref token v1", hashlib.sha256).digest()


def b32(data):
    return base64.b32encode(data).decode().rstrip("=").lower()


def unb32(text):
    t = text.upper()
    return base64.b32decode(t + "=" * (-len(t) % 8))


def make(key, purpose, msg_id, idx):
    assert msg_id.startswith("msg_") and len(msg_id) == 20
    body = unb32(msg_id[4:]) + int(idx).to_bytes(2, "big")
    tag = hmac.new(key, purpose.encode() + body, hashlib.sha256).digest()[:10]
    return b32(body + tag)


def check(key, purpose, token):
    if len(token) != 36:
        return None
    try:
        raw = unb32(token)
    except Exception:
        return None
    if len(raw) != 22 or b32(raw) != token.lower():
        return None
    tag = hmac.new(key, purpose.encode() + raw[:12], hashlib.sha256).digest()[:10]
    if not hmac.compare_digest(tag, raw[12:]):
        return None
    return "msg_" + b32(raw[:10]), int.from_bytes(raw[10:12], "big")


def main(argv):
    if len(argv) == 6 and argv[1] == "make":
        print(make(key_of(argv[2]), argv[3], argv[4], argv[5]))
        return 0
    if len(argv) == 5 and argv[1] == "check":
        r = check(key_of(argv[2]), argv[3], argv[4])
        if r is None:
            print("forged", file=sys.stderr)
            return 1
        print(r[0], r[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
