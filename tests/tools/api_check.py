#!/usr/bin/python3
"""One API v1 request, its answer checked against the OpenAPI document.

usage: api_check.py PORT SPEC METHOD PATH [key=K] [ws=WS] [idem=I] [body=JSON]
                    [bodyfile=F] [header=Name:Value ...]
       api_check.py --saved SPEC DIR

Prints the status on the first line and the JSON body on the second. Exits
non-zero with "SCHEMA: ..." when the answer is not what the document says for
that operation: the status is not documented, the content type differs, or
the body does not validate (python3-jsonschema, Draft 2020-12, $refs resolved
in the document). PATH may hold a query string; the operation is found by
matching PATH against the document's path templates ({id} = one segment).

--saved checks answers another client already got: DIR holds N.req ("METHOD
PATH STATUS CONTENT-TYPE", as scripts/demo.sh writes them with DEMO_RESPONSES)
and N.body. Prints "N answers valid", or exits non-zero naming the first that
is not.
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
from jsonschema import RefResolver


def find_operation(doc, method, path):
    segs = path.split("/")
    for tpl, ops in doc["paths"].items():
        t = tpl.split("/")
        if len(t) != len(segs):
            continue
        if all(a == b or (a.startswith("{") and a.endswith("}") and b) for a, b in zip(t, segs)):
            return ops.get(method.lower())
    return None


def check(doc, method, path, status, ctype, body):
    """Returns the parsed body, or raises SystemExit("SCHEMA: ...")."""
    op = find_operation(doc, method, urllib.parse.urlsplit(path).path)
    if op is None:
        sys.exit("SCHEMA: %s %s is not in the document" % (method, path))
    resp = op["responses"].get(str(status))
    if resp is None:
        sys.exit("SCHEMA: status %d is not documented for %s %s" % (status, method, path))
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    media = ctype.split(";")[0].strip()
    if media not in resp.get("content", {}):
        sys.exit("SCHEMA: content type %r is not documented for %d" % (ctype, status))
    try:
        inst = json.loads(body)
    except ValueError as e:
        sys.exit("SCHEMA: body is not JSON: %s" % e)
    schema = resp["content"][media]["schema"]
    try:
        jsonschema.Draft202012Validator(schema, resolver=RefResolver.from_schema(doc)).validate(inst)
    except jsonschema.ValidationError as e:
        sys.exit("SCHEMA: %s" % e.message)
    return inst


def check_saved(spec_path, d):
    import os
    doc = json.load(open(spec_path))
    reqs = sorted((f for f in os.listdir(d) if f.endswith(".req")), key=lambda f: int(f[:-4]))
    if not reqs:
        sys.exit("SCHEMA: no saved answers in %s" % d)
    for f in reqs:
        method, path, status, ctype = open(os.path.join(d, f)).read().rstrip("\n").split(" ", 3)
        body = open(os.path.join(d, f[:-4] + ".body"), "rb").read()
        try:
            check(doc, method, path, int(status), ctype, body)
        except SystemExit as e:
            sys.exit("%s (%s %s -> %s)" % (e.code, method, path, status))
    print("%d answers valid" % len(reqs))


def main():
    if sys.argv[1:2] == ["--saved"]:
        check_saved(sys.argv[2], sys.argv[3])
        return
    port, spec_path, method, path = sys.argv[1:5]
    headers = {}
    data = None
    for a in sys.argv[5:]:
        k, v = a.split("=", 1)
        if k == "key":
            headers["Authorization"] = "Bearer " + v
        elif k == "ws":
            headers["X-Workspace-Id"] = v
        elif k == "idem":
            headers["Idempotency-Key"] = v
        elif k == "body":
            data = v.encode()
        elif k == "bodyfile":
            data = open(v, "rb").read()
        elif k == "header":
            n, hv = v.split(":", 1)
            headers[n] = hv
        else:
            sys.exit("unknown option " + k)
    if data is not None:
        headers["Content-Type"] = "application/json"
    doc = json.load(open(spec_path))
    url = "http://127.0.0.1:%s%s" % (port, urllib.parse.quote(path, safe="/?=&%:@,*"))
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        r = urllib.request.urlopen(req, timeout=20)
    except urllib.error.HTTPError as e:
        r = e
    status, ctype, body = r.status, r.headers.get("Content-Type", ""), r.read()
    inst = check(doc, method, path, status, ctype, body)
    print(status)
    print(json.dumps(inst))


if __name__ == "__main__":
    main()
