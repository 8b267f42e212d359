#!/usr/bin/env bash
# Shared by the tests that check delivered mail: DKIM verification with
# python3-dkim (an implementation postmux did not write), its "DNS" being the keys
# postmux holds in Postgres. Sourced after lib.sh's t_setup.

# dkim_keys_json FILE: every key of this test's database as the TXT record a
# domain would publish, {"sel._domainkey.domain": "v=DKIM1; k=...; p=..."}.
dkim_keys_json() {
    t_psql "select json_object_agg(k.selector || '._domainkey.' || d.domain,
              'v=DKIM1; k=' || split_part(k.algorithm, '-', 1) || '; p=' || k.public_key)
            from dkim_keys k join domains d on d.id = k.domain_id" >"$1"
}

# dkim_verify_dir KEYS DIR: verifies every DKIM-Signature of every message file in
# DIR (smtp-sink's envelope X- lines are unsigned fields, so they do not matter);
# prints "ok N" (N messages) or the failures.
dkim_verify_dir() {
    /usr/bin/python3 - "$1" "$2" <<'PYEOF'
import dkim, json, os, sys
keys = {k.lower(): v.encode() for k, v in json.load(open(sys.argv[1])).items()}
def dns(name, timeout=5):
    return keys.get(name.decode().lower().rstrip("."), b"")
bad, n = [], 0
for f in sorted(os.listdir(sys.argv[2])):
    data = open(os.path.join(sys.argv[2], f), "rb").read()
    if b"\r" not in data: data = data.replace(b"\n", b"\r\n")
    nsig = data.count(b"\r\nDKIM-Signature:") + data.startswith(b"DKIM-Signature:")
    if nsig == 0: bad.append(f + ": unsigned"); continue
    d = dkim.DKIM(data)
    for i in range(nsig):
        if not d.verify(idx=i, dnsfunc=dns): bad.append("%s: signature %d fails" % (f, i))
    n += 1
print("ok %d" % n if not bad else "\n".join(bad[:10]))
PYEOF
}
