#!/usr/bin/env bash
# `postmux feedback parse`: the report parser against the bounce corpus
# (tests/corpus/bounces/, sisimai's samples and expectations) with a regression
# gate at the accuracy measured when the corpus was added (docs/feedback.md);
# the verb's JSON shape, reading standard input, --rules, and its exit codes.
# Needs no services.
source "$(dirname "$0")/lib.sh"

CORPUS=$PMX_ROOT/tests/corpus/bounces
PY=/usr/bin/python3

t_case "the corpus is read at least as well as when it was measured"
t_run "$T_TOOLS/fb_corpus" check "$CORPUS" --min kind=99.0 --min count=98.6 \
    --min address=96.7 --min hard=88.5 --min class=85.5 --min feedback_type=94.1
t_expect_rc 0 && t_expect_match "$T_OUT" '^samples [0-9]{3}$'
echo "$T_OUT" | sed 's/^/# /'

t_case "the gate fails below its level"
t_run "$T_TOOLS/fb_corpus" check "$CORPUS" --min class=100
t_expect_rc 1 && t_expect_match "$T_OUT" '^BELOW GATE class'

t_case "feedback parse prints one JSON object of the documented shape"
t_run "$PMX" feedback parse "$CORPUS/samples/lhost-postfix-01.eml"
t_expect_rc 0
printf '%s' "$T_OUT" > "$T_DIR/out.json"
t_run "$PY" - "$T_DIR/out.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"kind", "recipients", "feedback_type", "original"}, d.keys()
assert d["kind"] == "bounce", d["kind"]
assert set(d["original"]) == {"message_id", "ref", "return_path"}
r = d["recipients"][0]
assert set(r) == {"address", "action", "status", "diagnostic", "class", "hard"}, r.keys()
assert r["action"] == "failed" and r["status"].startswith("5."), r
assert isinstance(r["hard"], bool)
PYEOF
t_expect_rc 0

t_case "an ARF report is a complaint with its feedback type"
t_run "$PMX" feedback parse "$CORPUS/samples/arf-12.eml"
t_expect_rc 0 && t_expect_match "$T_OUT" '"kind": "complaint"' &&
    t_expect_match "$T_OUT" '"feedback_type": "opt-out"'

t_case "an auto-reply is counted as one"
t_run "$PMX" feedback parse "$CORPUS/samples/rfc3834-01.eml"
t_expect_rc 0 && t_expect_match "$T_OUT" '"kind": "auto_reply"'

t_case "standard input, given as - or nothing"
t_run bash -c "\"$PMX\" feedback parse - < \"$CORPUS/samples/lhost-qmail-01.eml\""
t_expect_rc 0 && t_expect_match "$T_OUT" '"class": "user_unknown"'
t_run bash -c "\"$PMX\" feedback parse < \"$CORPUS/samples/lhost-qmail-01.eml\""
t_expect_rc 0 && t_expect_match "$T_OUT" '"hard": true'

t_case "--rules replaces the built-in rules"
cat > "$T_DIR/rules.conf" <<'RULES'
[text]
mailbox_full = no smtp connection got far enough
RULES
t_run "$PMX" feedback parse --rules "$T_DIR/rules.conf" "$CORPUS/samples/lhost-qmail-01.eml"
t_expect_rc 0 && t_expect_match "$T_OUT" '"class": "mailbox_full"'

t_case "a bad rules file is a user error naming its line"
printf '[text]\nnot_a_class = abc\n' > "$T_DIR/bad.conf"
t_run "$PMX" feedback parse --rules "$T_DIR/bad.conf" "$CORPUS/samples/lhost-qmail-01.eml"
t_expect_rc 1 && t_expect_match "$T_ERR" 'bad.conf: line 2: unknown class'

t_case "an unreadable file is a user error with one line"
t_run "$PMX" feedback parse "$T_DIR/missing.eml"
t_expect_rc 1 && t_expect_match "$T_ERR" '^postmux: cannot open .*missing.eml' &&
    t_expect_eq "$(wc -l <<<"$T_ERR")" 1 "stderr lines"

t_case "usage errors exit 2"
t_run "$PMX" feedback
t_expect_rc 2
t_run "$PMX" feedback bogus
t_expect_rc 2
t_run "$PMX" feedback parse a b
t_expect_rc 2
t_run "$PMX" feedback parse --nope x
t_expect_rc 2
t_run "$PMX" feedback parse --help
t_expect_rc 0 && t_expect_match "$T_OUT" 'usage: postmux feedback parse'

t_case "garbage is kind unknown, not an error"
head -c 4096 /dev/urandom > "$T_DIR/garbage"
t_run "$PMX" feedback parse "$T_DIR/garbage"
t_expect_rc 0 && t_expect_match "$T_OUT" '"kind": "unknown"'

t_done
