#!/usr/bin/env python3
"""Opens a page in headless Chromium, saves a screenshot, clicks an element
with a real mouse event and reports what the page says afterwards. Drives
Chromium over the DevTools protocol on --remote-debugging-pipe (JSON messages
ended by NUL on fds 3 and 4), so it needs only Python's standard library and
Debian's chromium (no npm, no websocket client).

  cdp_click.py CHROMIUM URL SELECTOR SHOT_BEFORE SHOT_AFTER

Prints one JSON object: before/after {url, text, state, button_bg, csp_violations},
clicked (the point), and the screenshot paths. Exit 1 with a message on failure.
"""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TIMEOUT = 60.0


class Chrome:
    def __init__(self, binary, profile):
        to_r, to_w = os.pipe()      # we write commands, Chromium reads fd 3
        from_r, from_w = os.pipe()  # Chromium writes fd 4, we read

        # Chromium wants exactly fds 3 and 4: move them there in the child. The
        # pipes are close-on-exec (Python's default), the dup2 copies are not.
        def child():
            r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
            w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--disable-background-networking", "--no-proxy-server",
                "--user-data-dir=" + profile, "--window-size=800,600", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")   # Chromium refuses to run as root with its sandbox
        self.log = open(os.path.join(profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, preexec_fn=child, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(to_r)
        os.close(from_w)
        self.wfd, self.rfd = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_msg(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        os.write(self.wfd, json.dumps(m).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            r = self._read_msg(deadline)
            if r.get("id") == mid:
                if "error" in r:
                    raise RuntimeError("%s: %s" % (method, r["error"]))
                return r.get("result", {})
            self.events.append(r)

    def wait_event(self, method, session, pred=lambda p: True):
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method and e.get("sessionId") == session and pred(e.get("params", {})):
                    del self.events[: i + 1]
                    return e["params"]
            self.events.append(self._read_msg(deadline))

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.wfd)
        os.close(self.rfd)
        self.log.close()


def page_state(c, s):
    js = """(() => {
      const st = document.getElementById('state');
      const b = document.getElementById('unsubscribe');
      return JSON.stringify({url: location.href, text: document.body ? document.body.innerText : '',
        state: st ? st.dataset.state : null,
        button_bg: b ? getComputedStyle(b).backgroundColor : null,
        h1_size: getComputedStyle(document.querySelector('h1')).fontSize});
    })()"""
    r = c.call("Runtime.evaluate", {"expression": js, "returnByValue": True}, s)
    return json.loads(r["result"]["value"])


def shot(c, s, path):
    r = c.call("Page.captureScreenshot", {"format": "png"}, s)
    with open(path, "wb") as f:
        f.write(base64.b64decode(r["data"]))


def csp_violations(c):
    # Log entries of a refused inline style / resource ("Content Security Policy").
    out = []
    for e in c.events:
        p = e.get("params", {})
        text = (p.get("entry") or {}).get("text", "")
        if e.get("method") == "Log.entryAdded" and "Content Security Policy" in text:
            out.append(text)
    return out


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    binary, url, selector, before_png, after_png = argv[1:]
    profile = tempfile.mkdtemp(prefix="pmx-chromium.")
    c = Chrome(binary, profile)
    try:
        t = c.call("Target.createTarget", {"url": "about:blank"})
        s = c.call("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True})["sessionId"]
        c.call("Page.enable", {}, s)
        c.call("Log.enable", {}, s)
        c.call("Runtime.enable", {}, s)
        c.call("Emulation.setDeviceMetricsOverride",
               {"width": 800, "height": 600, "deviceScaleFactor": 1, "mobile": False}, s)
        c.call("Page.navigate", {"url": url}, s)
        c.wait_event("Page.loadEventFired", s)
        before = page_state(c, s)
        before["csp_violations"] = csp_violations(c)
        shot(c, s, before_png)

        js = ("(() => { const e = document.querySelector(%s); if (!e) return null;"
              " const r = e.getBoundingClientRect();"
              " return JSON.stringify([r.left + r.width / 2, r.top + r.height / 2]); })()"
              % json.dumps(selector))
        v = c.call("Runtime.evaluate", {"expression": js, "returnByValue": True}, s)["result"].get("value")
        if not v:
            raise RuntimeError("no element %s on the page" % selector)
        x, y = json.loads(v)
        for typ in ("mouseMoved", "mousePressed", "mouseReleased"):
            ev = {"type": typ, "x": x, "y": y}
            if typ != "mouseMoved":
                ev.update(button="left", clickCount=1)
            c.call("Input.dispatchMouseEvent", ev, s)
        c.wait_event("Page.loadEventFired", s)
        after = page_state(c, s)
        after["csp_violations"] = csp_violations(c)
        shot(c, s, after_png)
        print(json.dumps({"before": before, "after": after, "clicked": [x, y],
                          "screenshots": [before_png, after_png]}))
        return 0
    except Exception as e:
        log = ""
        try:
            with open(os.path.join(profile, "chromium.log"), "rb") as f:
                log = f.read()[-2000:].decode(errors="replace")
        except OSError:
            pass
        print("cdp_click: %s: %s\n%s" % (type(e).__name__, e, log), file=sys.stderr)
        return 1
    finally:
        c.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
