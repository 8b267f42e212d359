#!/usr/bin/env bash
# `postmux send`: a good job lands on pmx:{ws}:jobs with exactly the fields a
# Redis client would write (binary-safe); every bad job is refused with exit 1,
# the reason naming the field, and nothing added to the stream.
source "$(dirname "$0")/lib.sh"
t_setup

t_run $PMX workspace create Acme
WS=$T_OUT
KEY="pmx:{$WS}:jobs"
xlen() { t_redis xlen "$KEY"; }
nkeys() { t_redis dbsize; }

t_case "send: a full job becomes one stream entry with exact fields"
t_run $PMX send --workspace Acme --from 'Acme News <news@acme.example>' \
    --to bob@example.com --to '"Smith, Carol" <carol@example.com>' --cc dan@example.com \
    --bcc eve@example.com --reply-to help@acme.example --subject 'Grüße, Bob' \
    --text 'Hello Bob' --html '<p>Hello <b>Bob</b></p>' --header 'X-Campaign: spring 2024' \
    --header 'List-Unsubscribe:<mailto:u@acme.example>' --id order-42 --metadata '{"order":42}'
t_expect_rc 0
t_expect_match "$T_OUT" '^[0-9]+-[0-9]+$' "entry id"
ID1=$T_OUT
t_expect_eq "$(xlen)" 1 "XLEN"
want="$ID1
from
Acme News <news@acme.example>
to
bob@example.com, \"Smith, Carol\" <carol@example.com>
cc
dan@example.com
bcc
eve@example.com
reply_to
help@acme.example
subject
Grüße, Bob
text
Hello Bob
html
<p>Hello <b>Bob</b></p>
header:X-Campaign
spring 2024
header:List-Unsubscribe
<mailto:u@acme.example>
id
order-42
metadata
{\"order\":42}"
t_expect_eq "$(t_redis xrange "$KEY" - +)" "$want" "stream entry"

t_case "send: the workspace may be given by id; minimal job"
t_run $PMX send --workspace "$WS" --from a@acme.example --to b@example.com --subject s --html '<p>x</p>'
t_expect_rc 0
t_expect_eq "$(t_redis xrange "$KEY" "$T_OUT" "$T_OUT")" "$T_OUT
from
a@acme.example
to
b@example.com
subject
s
html
<p>x</p>" "minimal entry"
t_expect_eq "$(xlen)" 2 "XLEN"

t_case "send --raw FILE: the message goes byte for byte (CRLF, 8-bit) as a raw job"
printf 'From: a@acme.example\r\nTo: b@example.com\r\nSubject: caf\xe9\r\n\r\nline1\r\n.\r\nend\r\n' >"$T_DIR/raw.eml"
t_run $PMX send --workspace Acme --from a@acme.example --to b@example.com --raw "$T_DIR/raw.eml"
t_expect_rc 0
RID=$T_OUT
t_redis eval "return redis.call('xrange', KEYS[1], ARGV[1], ARGV[1])[1][2][6]" 1 "$KEY" "$RID" \
    | head -c -1 >"$T_DIR/raw.out"
cmp -s "$T_DIR/raw.eml" "$T_DIR/raw.out" || t_fail "raw value differs from the file"
t_expect_eq "$(t_redis eval "local e = redis.call('xrange', KEYS[1], ARGV[1], ARGV[1])[1][2]; return e[1]..','..e[3]..','..e[5]" 1 "$KEY" "$RID")" \
    "from,to,raw" "field names"

t_case "send --raw -: the message from stdin"
t_run bash -c "printf 'Subject: x\r\n\r\nbody\r\n' | $PMX send --workspace Acme --from a@acme.example --to b@example.com --raw -"
t_expect_rc 0
t_expect_eq "$(t_redis eval "return redis.call('xrange', KEYS[1], ARGV[1], ARGV[1])[1][2][6]" 1 "$KEY" "$T_OUT" | od -An -c | tr -s ' ')" \
    "$(printf 'Subject: x\r\n\r\nbody\r\n\n' | od -An -c | tr -s ' ')" "raw from stdin"

# bad_job REASON ARGS...: exit 1, stderr "postmux: REASON...", nothing added anywhere.
bad_job() {
    local reason=$1 before keys
    shift
    before=$(xlen)
    keys=$(nkeys)
    t_run $PMX send "$@"
    t_expect_rc 1
    [[ $T_ERR == "postmux: $reason"* ]] || t_fail "stderr '$T_ERR' does not start with 'postmux: $reason'"
    t_expect_eq "$T_OUT" "" "stdout"
    t_expect_eq "$(xlen)" "$before" "XLEN"
    t_expect_eq "$(nkeys)" "$keys" "number of keys"
}
J=(--workspace Acme --from a@acme.example --to b@example.com)

t_case "send: CR/LF in a header value is refused, XLEN unchanged"
bad_job "header:X-A: contains CR or LF" "${J[@]}" --subject s --text t --header $'X-A: a\r\nBcc: victim@example.com'
t_case "send: a bare LF in a header value is refused"
bad_job "header:X-A: contains CR or LF" "${J[@]}" --subject s --text t --header $'X-A: a\nb'
t_case "send: CR/LF in the subject is refused"
bad_job "subject: contains CR or LF" "${J[@]}" --subject $'hi\r\nBcc: victim@example.com' --text t
t_case "send: headers postmux writes itself are refused"
bad_job "header:Date: header not allowed" "${J[@]}" --subject s --text t --header 'Date: today'
bad_job "header:dkim-signature: header not allowed" "${J[@]}" --subject s --text t --header 'dkim-signature: x'
t_case "send: a bad header name is refused"
bad_job "header:X\\x20A: not a valid header name" "${J[@]}" --subject s --text t --header 'X A: v'
t_case "send: a bad from address is refused with the reason"
bad_job "from: missing '@' in 'bob'" --workspace Acme --from bob --to b@example.com --subject s --text t
t_case "send: an empty element in to is refused"
bad_job "to: empty element in address list" --workspace Acme --from a@acme.example --to 'b@example.com,,c@example.com' --subject s --text t
t_case "send: CR/LF in a recipient is refused"
bad_job "to: control character (CR)" --workspace Acme --from a@acme.example --to $'b@example.com\r\nRCPT TO:<x@y.example>' --subject s --text t
t_case "send: bad cc, bcc and reply-to are refused"
bad_job "cc: missing '@' in 'carol'" "${J[@]}" --cc carol --subject s --text t
bad_job "bcc: group syntax is not supported" "${J[@]}" --bcc 'team: x@y.example;' --subject s --text t
bad_job "reply_to: more than one address" "${J[@]}" --reply-to 'a@x.example, b@x.example' --subject s --text t
t_case "send: a missing subject or body is refused"
bad_job "subject: missing" "${J[@]}" --text t
bad_job "text: missing" "${J[@]}" --subject s
t_case "send: raw excludes subject, text, html and headers"
bad_job "subject: not allowed with raw" "${J[@]}" --raw "$T_DIR/raw.eml" --subject s
bad_job "html: not allowed with raw" "${J[@]}" --raw "$T_DIR/raw.eml" --html h
bad_job "header:X-A: not allowed with raw" "${J[@]}" --raw "$T_DIR/raw.eml" --header 'X-A: 1'
t_case "send: invalid UTF-8 in the subject is refused"
bad_job "subject: not valid UTF-8" "${J[@]}" --subject $'caf\xe9' --text t
t_case "send: metadata over 4 KiB and an id over 200 characters are refused"
bad_job "metadata: longer than 4096 bytes" "${J[@]}" --subject s --text t --metadata "$(head -c 4097 /dev/zero | tr '\0' m)"
bad_job "id: longer than 200 characters" "${J[@]}" --subject s --text t --id "$(head -c 201 /dev/zero | tr '\0' i)"
t_case "send: more than 1000 recipients are refused"
many=$(seq -f 'u%g@example.com' 1 1001 | paste -sd,)
bad_job "to: more than 1000 recipients" --workspace Acme --from a@acme.example --to "$many" --subject s --text t
half=$(seq -f 'c%g@example.com' 1 500 | paste -sd,)
bad_job "to: more than 1000 recipients (to, cc and bcc together)" "${J[@]}" --cc "$half" --bcc "$half" --subject s --text t
t_case "send: a message over max_message_size is refused"
cp "$T_CONF" "$T_DIR/small.conf"
T_CONF=$T_DIR/small.conf t_conf_set submission max_message_size 1K
head -c 2000 /dev/zero | tr '\0' x >"$T_DIR/big.txt"
POSTMUX_CONFIG=$T_DIR/small.conf bad_job "text: message parts total 2001 bytes, over max_message_size (1024)" "${J[@]}" --subject s --text "$(cat "$T_DIR/big.txt")"
POSTMUX_CONFIG=$T_DIR/small.conf bad_job "raw: message of 2000 bytes is over max_message_size (1024)" "${J[@]}" --raw "$T_DIR/big.txt"
t_run env POSTMUX_CONFIG="$T_DIR/small.conf" $PMX send "${J[@]}" --subject s --text "$(head -c 1000 "$T_DIR/big.txt")"
t_expect_rc 0
t_case "send: an unknown workspace is refused, nothing added"
bad_job "unknown workspace: Nope" --workspace Nope --from a@acme.example --to b@example.com --subject s --text t
t_expect_eq "$(t_redis exists 'pmx:{Nope}:jobs')" 0 "no stream for Nope"
t_case "send: an unreadable --raw file is refused"
bad_job "--raw $T_DIR/missing.eml: No such file or directory" "${J[@]}" --raw "$T_DIR/missing.eml"

t_case "send: usage errors exit 2 and add nothing"
before=$(xlen)
for args in "--from a@acme.example --to b@example.com --subject s --text t" \
            "--workspace Acme --to b@example.com --subject s --text t" \
            "--workspace Acme --from a@acme.example --subject s --text t" \
            "--workspace Acme --from a@acme.example --to b@example.com --subject s --text t --header NoColon" \
            "--workspace Acme --from a@acme.example --to b@example.com --subject s --subject t --text t" \
            "--workspace Acme --from a@acme.example --to b@example.com --bogus x" \
            "--workspace Acme --from a@acme.example --to b@example.com --subject s --text t extra"; do
    # shellcheck disable=SC2086
    t_run $PMX send $args
    t_expect_rc 2
done
t_expect_eq "$(xlen)" "$before" "XLEN"

t_case "send: Redis unreachable is exit 1"
cp "$T_CONF" "$T_DIR/nored.conf"
T_CONF=$T_DIR/nored.conf t_conf_set redis address "unix:$T_DIR/no-such.sock"
t_run $PMX -c "$T_DIR/nored.conf" send "${J[@]}" --subject s --text t
t_expect_rc 1
t_expect_match "$T_ERR" '^postmux: cannot connect to Redis' "error"

t_case "send: [redis] prefix names the stream, braces kept (cluster hash tag)"
cp "$T_CONF" "$T_DIR/prefix.conf"
T_CONF=$T_DIR/prefix.conf t_conf_set redis prefix acme-q
before=$(xlen)
t_run $PMX -c "$T_DIR/prefix.conf" send "${J[@]}" --subject s --text t
t_expect_rc 0
t_expect_eq "$(t_redis xlen "acme-q:{$WS}:jobs")" 1 "XLEN of the prefixed stream"
t_expect_eq "$(xlen)" "$before" "default stream unchanged"

t_done
