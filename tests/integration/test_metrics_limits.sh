#!/usr/bin/env bash
# The private metrics listener under hostile clients (http/server.h), against the
# real postmuxd with two workers: one address holding hundreds of idle connections
# cannot keep another client from GET /healthz; a request head trickled a byte at a
# time is cut off within the 5 s deadline (libmicrohttpd's server shuts the socket,
# docs/http.md); an over-long head gets 431 and is closed.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3

MPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 2
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set submission listen ""

TOOL=$T_DIR/http_tool.py
cat >"$TOOL" <<'EOF'
import os, socket, sys, time
port, cmd, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def read_all(s, wait):
    s.settimeout(wait)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return data, "closed"
            data += d
    except socket.timeout:
        return data, "open"
    except OSError:
        return data, "closed"

if cmd == "flood":                        # flood SRC N STOP-FILE: keeps N connections from SRC open
    import select
    def conn():
        s = socket.socket()
        s.bind((args[0], 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            pass
        return s
    socks = [conn() for i in range(int(args[1]))]
    print("OPEN", len(socks), flush=True)
    while not os.path.exists(args[2]):
        r, _, _ = select.select(socks, [], [], 0.2)
        for s in r:
            try:
                d = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:                          # closed by the server: open another one
                socks.remove(s)
                s.close()
                socks.append(conn())
        time.sleep(0.05)
elif cmd == "get":                        # get SRC PATH: the status line
    s = socket.socket()
    s.bind((args[0], 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET " + args[1].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    data, state = read_all(s, 10)
    print("STATUS", data.split(b"\r\n")[0].decode(errors="replace") if data else "(nothing)")
elif cmd == "trickle":                    # a byte every 0.5 s, never a whole head
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = b"GET /metrics HTTP/1.1\r\n" + b"X-A: " + b"a" * 200
    s.settimeout(0.5)
    got, state = b"", "open"
    end = time.monotonic() + 40
    for i in range(len(head)):
        if time.monotonic() > end:
            break
        try:
            s.send(head[i:i + 1])
        except OSError:
            state = "closed"
            break
        try:
            d = s.recv(4096)
            if not d:
                state = "closed"
                break
            got += d
        except socket.timeout:
            pass
        except OSError:
            state = "closed"
            break
    print("STATUS", got.split(b"\r\n")[0].decode(errors="replace") if got else "(nothing)")
    print("STATE", state)
elif cmd == "bighead":                    # a head over the cap
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X-A: a\r\n" * 5000)
    except OSError:
        pass
    data, state = read_all(s, 10)
    print("STATUS", data.split(b"\r\n")[0].decode(errors="replace") if data else "(nothing)")
    print("STATE", state)
EOF
tool() { "$PY" "$TOOL" "$MPORT" "$@"; }

DLOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
D=$!
t_case "postmuxd serves the metrics listener"
t_wait_for 20 "tool get 127.0.0.1 /healthz | grep -q '^STATUS HTTP/1.1 '"

t_case "300 idle connections from one address do not lock another client out of /healthz"
rm -f "$T_DIR/stop"
tool flood 127.0.0.7 300 "$T_DIR/stop" >"$T_DIR/flood.out" 2>&1 &
F=$!
t_wait_for 30 "grep -q '^OPEN' '$T_DIR/flood.out'"
sleep 1   # the flood has had its first connections refused and opened new ones
t_run tool get 127.0.0.1 /healthz
t_expect_match "$T_OUT" '^STATUS HTTP/1\.1 (200|503) ' "status line for another address"
t_run tool get 127.0.0.8 /metrics
t_expect_match "$T_OUT" '^STATUS HTTP/1\.1 200 ' "/metrics for a third address"
touch "$T_DIR/stop"
wait "$F"

t_case "a head trickled a byte at a time is cut off: the connection is closed, nothing served"
t_run tool trickle
t_expect_match "$T_OUT" '^STATUS (\(nothing\)|HTTP/1\.1 408 .*)$' "no answer but a 408"
t_expect_match "$T_OUT" '^STATE closed$' "connection"

t_case "a head over the 16 KiB cap gets 431 and the connection is closed"
t_run tool bighead
t_expect_match "$T_OUT" '^STATUS HTTP/1\.1 431 ' "status"
t_expect_match "$T_OUT" '^STATE closed$' "connection"

t_stop_postmuxd "$D"
t_done
