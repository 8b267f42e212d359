#!/usr/bin/env python3
"""tests/bench/gen_jobs.py COUNT OUT KIND DOMPREFIX WS... — `make bench`'s jobs as RESP.

COUNT XADD commands for `redis-cli --pipe`, round-robin over the workspaces WS (job k
goes to WS[k % len(WS)], From news@<DOMPREFIX><i>.bench.example), written to OUT.

KIND small: the ~2 KB composed text job of the `delivery` scenario (a 1.85 KB body).
KIND news:  a ~100 KB marketing newsletter as a composed job with both `html` and
            `text`, so postmux builds multipart/alternative: table layout with inline
            styles, long tracking links, image tags, a footer with an unsubscribe
            link, a few non-ASCII characters (so the HTML goes out quoted-printable,
            as real newsletters do), ~85 KB of HTML and ~15 KB of text. The greeting,
            the links and the preheader are personalised per recipient, so no two
            jobs are alike.

Recipients are user<k>@example.net (job k), or with GEN_TO_DOMAINS=D in the
environment user<k>@d<NNN>.bench with NNN = k % D in three digits (d000.bench ...):
the `mx` scenario's domains, served by its dnsmasq.
"""
import os
import sys

n, out, kind, dom, wss = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
if kind not in ("small", "news") or not wss:
    sys.exit("usage: gen_jobs.py COUNT OUT small|news DOMPREFIX WS...")


ndom = int(os.environ.get("GEN_TO_DOMAINS") or 0)
if not 0 <= ndom <= 1000:
    sys.exit("gen_jobs.py: GEN_TO_DOMAINS must be 0..1000")


def rcpt(k):
    return "user%d@d%03d.bench" % (k, k % ndom) if ndom else "user%d@example.net" % k


def cmd(*a):
    b = [x.encode() for x in a]
    return b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b)


def small_body():
    words = ("delivery engine workspace message signature relay queue outcome postgres "
             "redis stream worker domain selector recipient envelope header body").split()
    lines, i = [], 0
    while sum(len(l) + 1 for l in lines) < 1800:
        l = []
        while sum(len(w) + 1 for w in l) < 66:
            l.append(words[i % len(words)]); i += 7
        lines.append(" ".join(l))
    return "\n".join(lines) + "\n"


PRODUCTS = ["Trail runner 2", "Merino base layer", "Down jacket – 800 fill", "Insulated bottle",
            "Headlamp 400 lm", "Rain shell", "Camp stove", "Wool socks (3 pack)",
            "Trekking poles", "Sleeping bag −5 °C", "Daypack 22 l", "Sunglasses"]
COPY = ("Our spring collection is here, built for long days outdoors and designed to last "
        "for seasons. Every piece is tested by our field team in rain, wind and sun before "
        "it reaches the shelves, and every order ships free over €50.")


def news_templates():
    """The newsletter with {u} (user number) and {k} (job number) placeholders."""
    h = []
    h.append('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
             '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
             '<html xmlns="http://www.w3.org/1999/xhtml"><head>\n'
             '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\n'
             '<meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
             '<title>Spring collection</title>\n<style type="text/css">\n'
             'body{margin:0;padding:0;-webkit-text-size-adjust:100%;-ms-text-size-adjust:100%;}\n'
             'table,td{border-collapse:collapse;mso-table-lspace:0pt;mso-table-rspace:0pt;}\n'
             'img{border:0;height:auto;line-height:100%;outline:none;text-decoration:none;}\n'
             '@media only screen and (max-width:620px){.col{width:100%!important;display:block!important;}'
             '.hide{display:none!important;}}\n</style></head>\n'
             '<body style="margin:0;padding:0;background-color:#f4f4f4;">\n'
             '<div style="display:none;max-height:0;overflow:hidden;">Hello user{u}, the spring '
             'collection is in – up to 30% off this week only.</div>\n')
    h.append('<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
             'style="background-color:#f4f4f4;"><tr><td align="center" style="padding:20px 0;">\n'
             '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" '
             'style="background-color:#ffffff;width:600px;max-width:600px;">\n')
    i = 0
    while sum(len(x) for x in h) < 82000:
        p = PRODUCTS[i % len(PRODUCTS)]
        link = ("https://click.shop.example/ls/click?upn=u{u}-k{k}-item%d-"
                "aHR0cHM6Ly93d3cuc2hvcC5leGFtcGxlL3Byb2R1Y3RzL3NwcmluZy1jb2xsZWN0aW9uP3V0bV9zb3VyY2U9"
                "bmV3c2xldHRlciZ1dG1fbWVkaXVtPWVtYWlsJnV0bV9jYW1wYWlnbj1zcHJpbmc&amp;utm_source="
                "newsletter&amp;utm_medium=email&amp;utm_campaign=spring_%d" % (i, i))
        h.append(
            '<tr><td class="col" width="300" valign="top" style="padding:24px 20px 8px 20px;'
            'font-family:Helvetica,Arial,sans-serif;">\n'
            '<a href="%s" target="_blank" style="text-decoration:none;">'
            '<img src="https://img.shop.example/catalogue/spring/item-%d@2x.jpg" width="260" '
            'height="260" alt="%s" style="display:block;width:260px;max-width:100%%;height:auto;'
            'border:0;" /></a></td>\n'
            '<td class="col" width="300" valign="top" style="padding:24px 20px 8px 0;'
            'font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#333333;">\n'
            '<h2 style="margin:0 0 8px 0;font-size:20px;line-height:26px;color:#111111;'
            'font-weight:bold;">%s</h2>\n'
            '<p style="margin:0 0 12px 0;">%s</p>\n'
            '<p style="margin:0 0 16px 0;"><span style="color:#999999;text-decoration:'
            'line-through;">€%d.00</span>&nbsp;<strong style="color:#c0392b;">€%d.00</strong></p>\n'
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0"><tr>'
            '<td align="center" bgcolor="#2e7d32" style="border-radius:4px;">'
            '<a href="%s" target="_blank" style="display:inline-block;padding:10px 22px;'
            'font-family:Helvetica,Arial,sans-serif;font-size:15px;color:#ffffff;'
            'text-decoration:none;font-weight:bold;">Shop now</a></td></tr></table>\n'
            '</td></tr>\n' % (link, i, p, p, COPY, 40 + i * 3, 28 + i * 2, link))
        i += 1
    h.append('<tr><td colspan="2" style="padding:24px 20px;font-family:Helvetica,Arial,sans-serif;'
             'font-size:12px;line-height:18px;color:#777777;background-color:#eeeeee;">\n'
             'You receive this because user{u}@example.net subscribed at shop.example. '
             '<a href="https://shop.example/u/{k}-user{u}" style="color:#777777;">Unsubscribe</a> · '
             '<a href="https://shop.example/prefs/{k}" style="color:#777777;">Preferences</a><br />\n'
             'Shop Example GmbH · Hauptstraße 1 · 10115 Berlin</td></tr>\n'
             '</table></td></tr></table></body></html>\n')
    html = "".join(h)

    t = ["Hello user{u},\n\nThe spring collection is in – up to 30% off this week only.\n\n"]
    i = 0
    while sum(len(x) for x in t) < 15000:
        p = PRODUCTS[i % len(PRODUCTS)]
        t.append("%s\n%s\n\nWas €%d.00, now €%d.00.\nShop now: "
                 "https://click.shop.example/ls/click?upn=u{u}-k{k}-item%d\n\n"
                 % (p, COPY, 40 + i * 3, 28 + i * 2, i))
        i += 1
    t.append("-- \nUnsubscribe: https://shop.example/u/{k}-user{u}\n"
             "Shop Example GmbH, Hauptstraße 1, 10115 Berlin\n")
    return html, "".join(t)


with open(out, "wb") as f:
    if kind == "small":
        body = small_body()
        for k in range(n):
            w = k % len(wss)
            f.write(cmd("XADD", "pmx:{%s}:jobs" % wss[w], "*",
                        "from", "Bench %d <news@%s%d.bench.example>" % (w, dom, w),
                        "to", rcpt(k),
                        "subject", "Bench message %d of %d" % (k + 1, n),
                        "text", "Hello user%d,\n\n%s\n-- \nbench\n" % (k, body)))
    else:
        html, text = news_templates()
        # str.replace, not format: the markup is full of braces.
        for k in range(n):
            w = k % len(wss)
            u, kk = str(k), str(k)
            f.write(cmd("XADD", "pmx:{%s}:jobs" % wss[w], "*",
                        "from", "Shop Example <news@%s%d.bench.example>" % (dom, w),
                        "to", rcpt(k),
                        "subject", "Spring collection – up to 30%% off (%d)" % k,
                        "text", text.replace("{u}", u).replace("{k}", kk),
                        "html", html.replace("{u}", u).replace("{k}", kk)))
