#!/usr/bin/env python3
"""Builds tests/corpus/bounces/ from two public sisimai repositories (BSD-2-Clause):
the samples of sisimai/set-of-emails (maildir/bsd/*.eml) and the per-sample
expectations in sisimai/p5-sisimai's t/*.t files (INDEX => [['D.S.N.', 'replycode',
'REASON', 'hardbounce', ...], ...]). Run once by a maintainer to refresh the corpus;
the tests only read what it wrote (samples/*.eml and expected.tsv).

  make_expected.py SET_OF_EMAILS_GIT_DIR P5_SISIMAI_GIT_DIR OUT_DIR [MAX_BYTES [PER_ENGINE]]

Takes the samples of at most MAX_BYTES (6000), at most PER_ENGINE (20) per engine.

expected.tsv: one line per expected recipient:
  file  n  dsn  replycode  reason  hard  feedback_type
(n counts the recipients of one file from 0; feedback_type is "-" outside ARF.)
"""
import re, subprocess, sys, os

def git(gd, *args):
    return subprocess.run(["git", "--git-dir=" + gd] + list(args), check=True,
                          capture_output=True).stdout

soe, p5, out = sys.argv[1], sys.argv[2], sys.argv[3]
maxb = int(sys.argv[4]) if len(sys.argv) > 4 else 6000
per_engine = int(sys.argv[5]) if len(sys.argv) > 5 else 20
names = git(p5, "ls-tree", "-r", "--name-only", "HEAD", "t").decode().split()
entry = re.compile(r"\[\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*(\d)(?:\s*,\s*'?([^'\]\s]*)'?)?\s*\]")
block = re.compile(r"'(\d+)'\s*=>\s*\[(.*?)\]\s*\]\s*,", re.S)
sizes = {}
for line in git(soe, "ls-tree", "-r", "-l", "HEAD", "maildir/bsd").decode().splitlines():
    meta, path = line.split("\t")
    sizes[os.path.basename(path)] = int(meta.split()[3])
rows = []
os.makedirs(os.path.join(out, "samples"), exist_ok=True)
for n in names:
    m = re.match(r"t/\d+-(lhost|rhost)-(\w+)\.t$", n) or re.match(r"t/\d+-(rfc3464|rfc3834|arf)\.t$", n)
    if not m:
        continue
    text = git(p5, "show", "HEAD:" + n).decode()
    em = re.search(r"\$enginename\s*=\s*'([^']+)'", text)
    if not em:
        continue
    prefix = (m.group(1) + "-") if m.group(1) in ("lhost", "rhost") else ""
    eng = em.group(1).lower()
    exp = text[text.find("$isexpected"):]
    taken = 0
    for b in block.finditer(exp):
        if taken >= per_engine:
            break
        f = "%s%s-%02d.eml" % (prefix, eng, int(b.group(1)))
        if f not in sizes or sizes[f] > maxb:
            continue
        ents = entry.findall(b.group(2) + "]")
        if not ents:
            continue
        taken += 1
        data = git(soe, "show", "HEAD:maildir/bsd/" + f)
        open(os.path.join(out, "samples", f), "wb").write(data)
        for i, e in enumerate(ents):
            ft = e[4] if prefix == "" and eng == "arf" and e[4] else "-"
            rows.append("\t".join([f, str(i), e[0] or "-", e[1] or "-", e[2], e[3], ft]))
rows.sort()
with open(os.path.join(out, "expected.tsv"), "w") as fh:
    fh.write("# file\tn\tdsn\treplycode\treason\thard\tfeedback_type\n")
    fh.write("\n".join(rows) + "\n")
print(len(set(r.split("\t")[0] for r in rows)), "samples,", len(rows), "recipients")
