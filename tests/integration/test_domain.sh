#!/usr/bin/env bash
# `postmux domain add|list|show|verify|remove`: generated and imported DKIM keys
# (checked with openssl against what is printed and stored), keys sealed under the
# master key (show --check-keys with the right and a wrong master key), one
# workspace per domain, nothing written on refusal, and `domain verify` against a
# real DNS server (dnsmasq) serving right and wrong records.
source "$(dirname "$0")/lib.sh"
t_setup

json_ok() { printf '%s' "$1" | /usr/bin/python3 -m json.tool >/dev/null 2>&1 && echo yes || echo no; }
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }
# Every row of both tables, to prove a refused command wrote nothing.
snapshot() {
    t_psql "select d::text from domains d order by id"
    t_psql "select k::text from dkim_keys k order by id"
}
# The TXT value of NAME in zone-file output: the quoted strings joined.
txt_of() {
    printf '%s\n' "$1" | awk -v n="$2." '$1 == n && $2 == "TXT" {
        s = $0; sub(/^[^"]*/, "", s); out = ""
        while (match(s, /"[^"]*"/)) { out = out substr(s, RSTART + 1, RLENGTH - 2); s = substr(s, RSTART + RLENGTH) }
        print out }'
}
p_of() { sed -n 's/.*; p=//p' <<<"$1"; }
# Bits of the public key in a p= value (base64 DER SubjectPublicKeyInfo).
rsa_bits() {
    base64 -d <<<"$1" | openssl pkey -pubin -inform DER -noout -text 2>/dev/null |
        sed -n 's/.*Public-Key: (\([0-9]*\) bit).*/\1/p'
}
# Zone-file lines "NAME. TXT "a" "b"" -> dnsmasq txt-record=NAME,"a","b".
to_dnsmasq() {
    printf '%s\n' "$1" | sed -nE 's/^([^ ]+)\. TXT (".*")$/txt-record=\1,\2/p' | sed 's/" "/","/g'
}
# Every quoted string of a record line is at most 255 bytes.
max_string() {
    printf '%s\n' "$1" | grep -o '"[^"]*"' | awk '{ l = length($0) - 2; if (l > m) m = l } END { print m + 0 }'
}

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Other
OTHER=$T_OUT

t_case "domain add (default RSA-2048) prints exactly the two records to publish"
t_run $PMX domain add Acme Example.TEST
t_expect_rc 0
t_expect_eq "$(wc -l <<<"$T_OUT")" 2 "line count"
t_expect_match "$T_OUT" '^_postmux\.example\.test\. TXT "postmux-verify=[a-z2-7]{24}"$' "token record"
t_expect_match "$T_OUT" '^pmx\._domainkey\.example\.test\. TXT "v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+" "[A-Za-z0-9+/=]+"$' "key record"
t_expect_eq "$(max_string "$T_OUT")" 255 "longest string"
ADD1=$T_OUT
TOKEN=$(txt_of "$T_OUT" _postmux.example.test)
TOKEN=${TOKEN#postmux-verify=}
P1=$(p_of "$(txt_of "$T_OUT" pmx._domainkey.example.test)")
t_expect_eq "$(rsa_bits "$P1")" 2048 "published key size"
t_expect_eq "$(t_psql "select workspace_id, verify_token, verified_at is null from domains where domain = 'example.test'")" \
    "$ACME|$TOKEN|t" "domains row"
t_expect_eq "$(t_psql "select selector, algorithm, public_key = '$P1', active from dkim_keys")" \
    "pmx|rsa-sha256|t|t" "dkim_keys row"
# Sealed: version byte 1, 12-byte nonce, ciphertext, 16-byte tag; no PEM in clear.
t_expect_eq "$(t_psql "select get_byte(private_key_enc, 0), length(private_key_enc) > 1000,
    position('PRIVATE KEY'::bytea in private_key_enc) from dkim_keys")" "1|t|0" "sealed key"

t_case "domain add --algorithm ed25519: k=ed25519 and the raw 32-byte key (RFC 8463)"
t_run $PMX domain add "$ACME" ed.example.test --algorithm ed25519
t_expect_rc 0
t_expect_eq "$(wc -l <<<"$T_OUT")" 2 "line count"
t_expect_match "$T_OUT" '^pmx\._domainkey\.ed\.example\.test\. TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="$' "key record"
PE=$(p_of "$(txt_of "$T_OUT" pmx._domainkey.ed.example.test)")
t_expect_eq "$(base64 -d <<<"$PE" | wc -c)" 32 "raw key bytes"
t_expect_eq "$(t_psql "select k.selector, k.algorithm, k.public_key = '$PE' from dkim_keys k
    join domains d on d.id = k.domain_id where d.domain = 'ed.example.test'")" "pmx|ed25519-sha256|t" "row"

t_case "domain add --algorithm both --selector S: RSA under S, Ed25519 under S-ed25519"
t_run $PMX domain add Acme both.example.test --algorithm both --selector Mail2024
t_expect_rc 0
t_expect_eq "$(wc -l <<<"$T_OUT")" 3 "line count"
t_expect_match "$T_OUT" '^mail2024\._domainkey\.both\.example\.test\. TXT "v=DKIM1; k=rsa; p=' "rsa record"
t_expect_match "$T_OUT" '^mail2024-ed25519\._domainkey\.both\.example\.test\. TXT "v=DKIM1; k=ed25519; p=' "ed25519 record"
t_expect_eq "$(t_psql "select string_agg(k.selector || ':' || k.algorithm, ' ' order by k.selector)
    from dkim_keys k join domains d on d.id = k.domain_id where d.domain = 'both.example.test'")" \
    "mail2024:rsa-sha256 mail2024-ed25519:ed25519-sha256" "rows"
BOTH=$T_OUT

t_case "domain add --bits 4096"
t_run $PMX domain add Acme big.example.test --bits 4096
t_expect_rc 0
t_expect_eq "$(rsa_bits "$(p_of "$(txt_of "$T_OUT" pmx._domainkey.big.example.test)")")" 4096 "key size"
t_expect_eq "$(max_string "$T_OUT")" 255 "longest string"

t_case "domain add: bad options and names are refused before anything is written"
before=$(snapshot)
t_run $PMX domain add Acme weak.example.test --bits 1024
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: RSA key size must be 2048 to 4096 bits, got 1024" "error"
t_run $PMX domain add Acme weak.example.test --bits 8192
t_expect_rc 1
t_run $PMX domain add Acme weak.example.test --bits lots
t_expect_rc 2
t_run $PMX domain add Acme weak.example.test --algorithm ed25519 --bits 2048
t_expect_rc 2
t_run $PMX domain add Acme weak.example.test --algorithm dsa
t_expect_rc 2
t_run $PMX domain add Acme weak.example.test --selector 'bad_sel'
t_expect_rc 1
t_run $PMX domain add Acme weak.example.test --selector "$(printf 'a%.0s' $(seq 60))" --algorithm both
t_expect_rc 1
for d in nodot -lead.example.test trail-.example.test 'a..b.test' 'under_score.test' 'sp ace.test' \
         "$(printf 'a%.0s' $(seq 64)).test" "$(printf 'abcdefghi.%.0s' $(seq 26))test" .; do
    t_run $PMX domain add Acme -- "$d"
    t_expect_rc 1 || break
    t_expect_match "$T_ERR" "^postmux: invalid domain '" "error for $d"
done
t_run $PMX domain add Nobody ok.example.test
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nobody" "unknown workspace"
t_run $PMX domain add Acme
t_expect_rc 2
t_expect_eq "$(snapshot)" "$before" "tables unchanged"

t_case "domain add: a domain of another workspace is refused and nothing is written"
before=$(snapshot)
t_run $PMX domain add Other EXAMPLE.test --selector other
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: domain example.test belongs to another workspace" "error"
t_expect_eq "$T_OUT" "" "stdout"
t_expect_eq "$(snapshot)" "$before" "tables unchanged"

t_case "domain add: an existing selector is refused; a new one adds a key"
before=$(snapshot)
t_run $PMX domain add Acme example.test
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: selector pmx already exists for example.test (choose another with --selector)" "error"
t_expect_eq "$(snapshot)" "$before" "tables unchanged"
t_run $PMX domain add Acme example.test --selector pmx2 --algorithm ed25519
t_expect_rc 0
t_expect_eq "$(txt_of "$T_OUT" _postmux.example.test)" "postmux-verify=$TOKEN" "same token"
t_expect_match "$T_OUT" '^pmx2\._domainkey\.example\.test\. TXT "v=DKIM1; k=ed25519; p=' "new key"
# Not yet verified: the new key is active at once.
t_expect_eq "$(t_psql "select string_agg(selector || ':' || active, ' ' order by selector) from dkim_keys k
    join domains d on d.id = k.domain_id where d.domain = 'example.test'")" "pmx:true pmx2:true" "keys"
ADD2=$T_OUT

t_case "domain add --private-key: a 1024-bit traditional RSA key is imported with a warning"
openssl genrsa -traditional -out "$T_DIR/rsa1024.pem" 1024 2>/dev/null
t_run $PMX domain add Acme imported.example.test --private-key "$T_DIR/rsa1024.pem"
t_expect_rc 0
t_expect_match "$T_ERR" '^postmux: warning: RSA key of 1024 bits is weak' "warning"
want=$(openssl pkey -in "$T_DIR/rsa1024.pem" -pubout -outform DER | base64 -w0)
t_expect_eq "$(p_of "$(txt_of "$T_OUT" pmx._domainkey.imported.example.test)")" "$want" "p= is the file's key"

t_case "domain add --private-key: PKCS#8 Ed25519 imported; algorithm mismatch refused"
openssl genpkey -algorithm ed25519 -out "$T_DIR/ed.pem" 2>/dev/null
before=$(snapshot)
t_run $PMX domain add Acme ed2.example.test --private-key "$T_DIR/ed.pem" --algorithm rsa
t_expect_rc 1
t_expect_match "$T_ERR" "holds an Ed25519 key, not rsa" "error"
t_expect_eq "$(snapshot)" "$before" "tables unchanged"
t_run $PMX domain add Acme ed2.example.test --private-key "$T_DIR/ed.pem"
t_expect_rc 0
want=$(openssl pkey -in "$T_DIR/ed.pem" -pubout -outform DER | tail -c 32 | base64 -w0)
t_expect_eq "$(p_of "$(txt_of "$T_OUT" pmx._domainkey.ed2.example.test)")" "$want" "p= is the raw key"

t_case "domain add --private-key: 512-bit RSA, EC, encrypted and missing files are refused"
openssl genrsa -out "$T_DIR/rsa512.pem" 512 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_DIR/ec.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes256 -pass pass:x -out "$T_DIR/enc.pem" 2>/dev/null
before=$(snapshot)
t_run $PMX domain add Acme refused.example.test --private-key "$T_DIR/rsa512.pem"
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: $T_DIR/rsa512.pem: RSA key of 512 bits is too weak: at least 1024 bits are needed" "512"
t_run $PMX domain add Acme refused.example.test --private-key "$T_DIR/ec.pem"
t_expect_rc 1
t_expect_match "$T_ERR" "unsupported key type" "EC"
t_run $PMX domain add Acme refused.example.test --private-key "$T_DIR/enc.pem"
t_expect_rc 1
t_expect_match "$T_ERR" "is encrypted" "encrypted"
t_run $PMX domain add Acme refused.example.test --private-key "$T_DIR/nope.pem"
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: cannot open $T_DIR/nope.pem: No such file or directory" "missing"
t_run $PMX domain add Acme refused.example.test --private-key "$T_DIR/ed.pem" --algorithm both
t_expect_rc 2
t_expect_eq "$(snapshot)" "$before" "tables unchanged"

t_case "domain list: text, per workspace, --json"
t_run $PMX domain list
t_expect_rc 0
t_expect_match "$T_OUT" '^DOMAIN +WORKSPACE +STATUS +KEYS$' "header"
t_expect_match "$T_OUT" "^example\.test +$ACME +unverified +pmx \(rsa-sha256\), pmx2 \(ed25519-sha256\)$" "row"
t_run $PMX domain list Other
t_expect_rc 0
t_expect_eq "$(wc -l <<<"$T_OUT")" 1 "Other has none"
t_run $PMX domain list "$ACME" --json
t_expect_rc 0
t_expect_eq "$(json_ok "$T_OUT")" yes "valid JSON"
t_expect_eq "$(json_get "$T_OUT" "' '.join(d['domain'] for d in j)")" \
    "big.example.test both.example.test ed.example.test ed2.example.test example.test imported.example.test" "domains"
t_expect_eq "$(json_get "$T_OUT" "[(d['verified'], d['verify_token'], [k['selector'] for k in d['keys']]) for d in j if d['domain'] == 'example.test'][0]")" \
    "(False, '$TOKEN', ['pmx', 'pmx2'])" "fields"
t_run $PMX domain list Nobody
t_expect_rc 1

t_case "domain show --check-keys decrypts every key with the master key"
t_run $PMX domain show example.test --check-keys
t_expect_rc 0
t_expect_eq "$T_OUT" "pmx._domainkey.example.test: OK (rsa-sha256)
pmx2._domainkey.example.test: OK (ed25519-sha256)" "output"
t_run $PMX domain show example.test
t_expect_rc 0
t_expect_match "$T_OUT" '^status: +unverified$' "status"
t_expect_match "$T_OUT" "^_postmux\.example\.test\. TXT \"postmux-verify=$TOKEN\"$" "token record"
t_run $PMX domain show example.test --json
t_expect_eq "$(json_get "$T_OUT" "j['workspace_id'], len(j['keys']), j['verified']")" "$ACME 2 False" "json"

t_case "a wrong master key cannot read the keys back: clear error, exit 1"
head -c 32 /dev/urandom | base64 >"$T_DIR/other.key"
sed "s|^master_key_file = .*|master_key_file = $T_DIR/other.key|" "$T_CONF" >"$T_DIR/other.conf"
t_run $PMX -c "$T_DIR/other.conf" domain show example.test --check-keys
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: cannot decrypt DKIM key for example.test/pmx: wrong master key or corrupted data
postmux: cannot decrypt DKIM key for example.test/pmx2: wrong master key or corrupted data" "errors"
t_expect_eq "$T_OUT" "" "no OK lines"

t_case "a key blob copied onto another row does not open"
t_psql "update dkim_keys set private_key_enc = (select k.private_key_enc from dkim_keys k join domains d
    on d.id = k.domain_id where d.domain = 'big.example.test') where id = (select k.id from dkim_keys k
    join domains d on d.id = k.domain_id where d.domain = 'imported.example.test')"
t_run $PMX domain show imported.example.test --check-keys
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: cannot decrypt DKIM key for imported.example.test/pmx: wrong master key or corrupted data" "error"

t_case "master key file: missing, wrong length"
sed "s|^master_key_file = .*|master_key_file = $T_DIR/none.key|" "$T_CONF" >"$T_DIR/none.conf"
t_run $PMX -c "$T_DIR/none.conf" domain show example.test --check-keys
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: master key file $T_DIR/none.key: cannot open: No such file or directory" "missing"
head -c 16 /dev/urandom | base64 >"$T_DIR/short.key"
sed "s|^master_key_file = .*|master_key_file = $T_DIR/short.key|" "$T_CONF" >"$T_DIR/short.conf"
before=$(snapshot)
t_run $PMX -c "$T_DIR/short.conf" domain add Acme short.example.test
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: master key file $T_DIR/short.key: must hold 32 bytes (base64), got 16" "short"
t_expect_eq "$(snapshot)" "$before" "tables unchanged"
# 32 raw bytes are a key too.
head -c 32 /dev/urandom >"$T_DIR/raw.key"
sed "s|^master_key_file = .*|master_key_file = $T_DIR/raw.key|" "$T_CONF" >"$T_DIR/raw.conf"
t_run $PMX -c "$T_DIR/raw.conf" domain add Acme raw.example.test --algorithm ed25519
t_expect_rc 0
t_run $PMX -c "$T_DIR/raw.conf" domain show raw.example.test --check-keys
t_expect_rc 0
t_expect_eq "$T_OUT" "pmx._domainkey.raw.example.test: OK (ed25519-sha256)" "raw key works"

# ---- verify against a real DNS server ----
ZONE=$T_DIR/zone.conf
{
    to_dnsmasq "$ADD1"
    to_dnsmasq "$(grep '^pmx2\.' <<<"$ADD2")"
    to_dnsmasq "$BOTH"
    echo 'txt-record=_postmux.ed.example.test,"postmux-verify=wrongtokenwrongtokenwron"'
    to_dnsmasq "$(grep '_domainkey' <<<"$BOTH" | sed 's/both\.example\.test/big.example.test/')"
    echo 'txt-record=_postmux.big.example.test,"unrelated","postmux-verify=nope"'
    echo 'local=/example.test/'
} >"$ZONE"
DNS_PORT=$(t_dns_start "$ZONE")

t_case "domain verify: right records (multi-string TXT joined) -> verified"
t_run $PMX domain verify example.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 0
t_expect_eq "$T_OUT" "verified" "output"
t_expect_eq "$(t_psql "select verified_at is not null from domains where domain = 'example.test'")" t "verified_at"
t_expect_eq "$(t_psql "select count(*) from events")" 0 "no event for a DNS check"
t_run $PMX domain verify both.example.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 0
t_expect_eq "$T_OUT" "verified" "both: output"

t_case "domain verify: a wrong token -> not verified, exit 1, names the record"
t_run $PMX domain verify ed.example.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: _postmux\.ed\.example\.test: no TXT record says \"postmux-verify=[a-z2-7]{24}\"$" "token error"
t_expect_match "$T_ERR" "^postmux: pmx\._domainkey\.ed\.example\.test: no TXT record$" "key error"
t_expect_match "$T_ERR" "^postmux: ed\.example\.test is not verified$" "last line"
t_expect_eq "$T_OUT" "" "stdout"
t_expect_eq "$(t_psql "select verified_at is null from domains where domain = 'ed.example.test'")" t "not marked"

t_case "domain verify: a published key that is not ours -> not verified"
t_run $PMX domain verify big.example.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: _postmux\.big\.example\.test: " "token"
t_expect_match "$T_ERR" "^postmux: pmx\._domainkey\.big\.example\.test: no TXT record$" "pmx selector"
t_expect_eq "$(t_psql "select verified_at is null from domains where domain = 'big.example.test'")" t "not marked"

t_case "domain verify: no answer from the name server -> exit 1, not marked"
t_run $PMX domain verify imported.example.test --nameserver "127.0.0.1:$(pmx_svc_free_port)"
t_expect_rc 1
t_expect_match "$T_ERR" "DNS lookup of _postmux\.imported\.example\.test failed" "error"
t_expect_eq "$(t_psql "select verified_at is null from domains where domain = 'imported.example.test'")" t "not marked"

t_case "domain verify: bad --nameserver and unknown domains"
for ns in 300.1.1.1 127.0.0.1:0 127.0.0.1:99999 127.0.0.1:x host.example; do
    t_run $PMX domain verify example.test --nameserver "$ns"
    t_expect_rc 2 || break
done
t_run $PMX domain verify unknown.example.test --skip-dns
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown domain: unknown.example.test" "unknown"

t_case "domain verify --skip-dns marks verified and writes an events row"
t_run $PMX domain verify ed.example.test --skip-dns
t_expect_rc 0
t_expect_eq "$T_OUT" "verified" "output"
t_expect_eq "$(t_psql "select verified_at is not null from domains where domain = 'ed.example.test'")" t "marked"
t_expect_eq "$(t_psql "select workspace_id, message_id is null, type, detail from events")" \
    "$ACME|t|domain.verified|skip_dns domain=ed.example.test" "event"

t_case "a key added to a verified domain waits until verify finds it in DNS"
t_run $PMX domain add Acme example.test --selector pmx3
t_expect_rc 0
t_expect_match "$T_ERR" "example\.test is verified: the new key signs once" "note"
t_expect_eq "$(t_psql "select active from dkim_keys k join domains d on d.id = k.domain_id
    where d.domain = 'example.test' and selector = 'pmx3'")" f "pending"
t_run $PMX domain list Acme
t_expect_match "$T_OUT" "pmx3 \(rsa-sha256, pending\)" "listed as pending"
t_run $PMX domain verify example.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: pmx3\._domainkey\.example\.test: no TXT record$" "missing new key"
t_expect_eq "$(t_psql "select verified_at is not null from domains where domain = 'example.test'")" t "stays verified"
t_run $PMX domain verify example.test --skip-dns
t_expect_rc 0
t_expect_eq "$(t_psql "select bool_and(active) from dkim_keys k join domains d on d.id = k.domain_id
    where d.domain = 'example.test'")" t "all active after verify"

t_case "domain remove: the domain and its keys go; an unknown domain is exit 1"
t_run $PMX domain remove Both.Example.Test
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from domains where domain = 'both.example.test'")" 0 "domain gone"
t_expect_eq "$(t_psql "select count(*) from dkim_keys where selector like 'mail2024%'")" 0 "keys gone"
t_run $PMX domain remove both.example.test
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown domain: both.example.test" "error"
t_run $PMX domain remove
t_expect_rc 2
# Now free: another workspace may take it.
t_run $PMX domain add Other both.example.test --algorithm ed25519
t_expect_rc 0

t_done
