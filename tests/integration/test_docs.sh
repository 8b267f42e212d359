#!/usr/bin/env bash
# The documentation (README, Install; tests/README.md "The documentation test"):
# every man page under man/ renders without a warning; postmux.conf(5),
# postmux.conf.example and config/config.c's key table hold exactly the same keys;
# every verb, sub-verb and option of `postmux --help` and of the cli/*.c option
# tables is in postmux(1); every doc the code cites exists; `make install` puts the
# man pages where man finds them. Needs no service.
source "$(dirname "$0")/lib.sh"

MAN_DIR=$PMX_ROOT/man
PAGES=(postmux.1 postmuxd.8 postmux.conf.5)

# The roff source as plain words: font escapes and \& dropped, \- and \e made
# what they print. Enough to look for option names and keys in it.
plain() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\&//g' -e 's/\\-/-/g' \
        -e 's/\\e/\\/g' "$1"
}

# --- the keys, each source parsed on its own: "section key" lines, sorted --------
# config/config.c: the entries of cfg_keys[] ({ "section", "key", setter, ... }).
keys_config_c() {
    awk '/^static const struct cfg_key cfg_keys\[\] = \{/ { on = 1; next }
         on && /^\};/ { on = 0 }
         on' "$1" |
        sed -nE 's/^[[:space:]]*\{[[:space:]]*"([a-z_]+)",[[:space:]]*"([a-z_]+)",.*/\1 \2/p' |
        LC_ALL=C sort
}
# postmux.conf.example: "key = value" lines under "[section]" (comment lines skipped),
# and ";key = value" (no space after the ';'): a key left unset on purpose because its
# default depends on another key ([submission] memory_budget), shown commented out.
# A named section "[pool NAME]" (or ";[pool NAME]", an example left commented out)
# counts as its kind, "pool".
keys_example() {
    awk '/^;?\[[a-z_]+ [^]]+\]/ { sec = $0; sub(/^;?\[/, "", sec); sub(/ .*/, "", sec); next }
         /^;[a-z_]+ = / { k = substr($0, 2); sub(/[[:space:]]*=.*/, "", k); print sec " " k; next }
         /^[[:space:]]*[;#]/ { next }
         /^\[[a-z_]+\]/ { sec = $0; gsub(/[][[:space:]]/, "", sec); next }
         /^[a-z_]+[[:space:]]*=/ { k = $0; sub(/[[:space:]]*=.*/, "", k); print sec " " k }' "$1" |
        LC_ALL=C sort
}
# postmux.conf(5): in KEYS, `.SS "[section]"` then one `.TP` + `.B key` per key;
# `.SS "[pool NAME]"` counts as its kind, "pool".
keys_man() {
    awk '/^\.SH / { on = ($0 ~ /^\.SH "?KEYS"?$/); next }
         !on { next }
         /^\.SS / { sec = $0; sub(/^\.SS "?\[/, "", sec); sub(/\]"?$/, "", sec); sub(/ .*/, "", sec); next }
         /^\.TP/ { tp = 1; next }
         tp && /^\.B / { print sec " " $2 }
         { tp = 0 }' "$1" |
        LC_ALL=C sort
}

t_case "every man page renders with groff -ww and man -l without a warning"
for p in "${PAGES[@]}"; do
    f=$MAN_DIR/$p
    if [[ ! -f $f ]]; then
        t_fail "no $f"
        continue
    fi
    t_run groff -man -ww -z -Tutf8 "$f"
    t_expect_rc 0
    t_expect_eq "$T_ERR" "" "groff's warnings for $p"
    if command -v man >/dev/null 2>&1; then
        t_run env MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings=w -l "$f"
        t_expect_rc 0
        t_expect_eq "$T_ERR" "" "man -l's warnings for $p"
        t_expect_match "$T_OUT" '^NAME' "a NAME section in man -l $p"
    fi
    # .TH names the page as its file does: postmux.conf.5 -> POSTMUX.CONF 5
    name=${p%.*} sect=${p##*.}
    t_expect_match "$(grep -m1 '^\.TH ' "$f")" "^\.TH ${name^^} $sect " ".TH of $p"
done

t_case "the test's key parsers find keys in each source (not three empty lists)"
n_c=$(keys_config_c "$PMX_ROOT/config/config.c" | wc -l)
n_e=$(keys_example "$PMX_ROOT/postmux.conf.example" | wc -l)
n_m=$(keys_man "$MAN_DIR/postmux.conf.5" | wc -l)
for n in "$n_c" "$n_e" "$n_m"; do
    ((n >= 20)) || t_fail "a key list has $n keys (config.c $n_c, example $n_e, man $n_m)"
done
keys_config_c "$PMX_ROOT/config/config.c" | grep -qx 'relay tls_verify' ||
    t_fail "config.c parser misses [relay] tls_verify"
keys_man "$MAN_DIR/postmux.conf.5" | grep -qx 'keys master_key_file' ||
    t_fail "man parser misses [keys] master_key_file"
# A named section: [pool NAME] counts as "pool" in each source.
keys_config_c "$PMX_ROOT/config/config.c" | grep -qx 'pool addresses' ||
    t_fail "config.c parser misses [pool NAME] addresses"
keys_example "$PMX_ROOT/postmux.conf.example" | grep -qx 'pool addresses' ||
    t_fail "example parser misses [pool NAME] addresses"
keys_man "$MAN_DIR/postmux.conf.5" | grep -qx 'pool helo_name' ||
    t_fail "man parser misses [pool NAME] helo_name"
t_expect_eq "$(printf '[keys]\nmaster_key_file = x\n;[pool a]\n;addresses = 1\n' | keys_example /dev/stdin |
               paste -sd' ')" "keys master_key_file pool addresses" "a commented-out [pool NAME] example"

# diff_keys A_NAME A_FILE B_NAME B_FILE: fails naming every key one has and the other lacks.
diff_keys() {
    local only_a only_b
    only_a=$(LC_ALL=C comm -23 "$2" "$4" | tr '\n' ',' | sed 's/,$//; s/,/, /g')
    only_b=$(LC_ALL=C comm -13 "$2" "$4" | tr '\n' ',' | sed 's/,$//; s/,/, /g')
    [[ -z $only_a ]] || t_fail "in $1 but not in $3: $only_a"
    [[ -z $only_b ]] || t_fail "in $3 but not in $1: $only_b"
}

t_case "postmux.conf(5), postmux.conf.example and config/config.c hold the same keys"
keys_config_c "$PMX_ROOT/config/config.c" >"$T_DIR/keys.c"
keys_example "$PMX_ROOT/postmux.conf.example" >"$T_DIR/keys.example"
keys_man "$MAN_DIR/postmux.conf.5" >"$T_DIR/keys.man"
diff_keys "config/config.c" "$T_DIR/keys.c" "postmux.conf.example" "$T_DIR/keys.example"
diff_keys "config/config.c" "$T_DIR/keys.c" "postmux.conf(5)" "$T_DIR/keys.man"
# each key once: a key documented twice would hide a missing one
for f in keys.c keys.example keys.man; do
    d=$(uniq -d "$T_DIR/$f" | tr '\n' ' ')
    [[ -z $d ]] || t_fail "$f lists keys twice: $d"
done

t_case "the key comparison catches a key missing from any one source"
# The same parsers on copies with one key taken out of each: each must be told.
for src in c example man; do
    case $src in
        c) keys_config_c <(grep -v '"relay", "tls_verify"' "$PMX_ROOT/config/config.c") >"$T_DIR/cut" ;;
        example) keys_example <(grep -v '^tls_verify' "$PMX_ROOT/postmux.conf.example") >"$T_DIR/cut" ;;
        man) keys_man <(awk '/^\.B tls_verify$/ { print ".B tls_verif"; next } { print }' \
                          "$MAN_DIR/postmux.conf.5") >"$T_DIR/cut" ;;
    esac
    missing=$(LC_ALL=C comm -23 "$T_DIR/keys.c" "$T_DIR/cut")
    t_expect_eq "$missing" "relay tls_verify" "the key missing from the cut $src copy"
done

t_case "every verb, sub-verb and option of postmux --help is in postmux(1)"
if [[ ! -x $PMX ]]; then
    t_fail "no $PMX: build first (make)"
else
    t_run "$PMX" --help
    t_expect_rc 0
    help=$T_OUT
    page=$(plain "$MAN_DIR/postmux.1")
    # "  verb sub ... | sub ..." lines (two spaces, then the verb) give verbs and sub-verbs.
    words=$(awk '/^  [a-z]/ {
                   v = $1; print v
                   if ($2 ~ /^[a-z][a-z|]*$/) { n = split($2, s, "|"); for (i = 1; i <= n; i++) print v " " s[i] }
                   for (i = 2; i < NF; i++) if ($i == "|" && $(i + 1) ~ /^[a-z]+$/) print v " " $(i + 1)
                 }' <<<"$help" | sort -u)
    nverbs=$(grep -cv ' ' <<<"$words")
    ((nverbs >= 10)) || t_fail "found only $nverbs verbs in postmux --help"
    while IFS= read -r w; do
        [[ -n $w ]] || continue
        # a sub-verb must appear as "verb sub" (tables and headings write it so)
        if [[ $w == *' '* ]]; then
            grep -qE "(^|[^a-z])${w}([^a-z-]|$)" <<<"$page" ||
                t_fail "postmux(1) has no '$w'"
        else
            grep -qE "^\.SS \"?postmux $w\"?$" <<<"$page" ||
                t_fail "postmux(1) has no section (.SS) for the verb '$w'"
        fi
    done <<<"$words"
    # every --option of the usage text
    for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
        grep -qF -- "$o" <<<"$page" || t_fail "postmux(1) does not mention $o (from --help)"
    done
fi

t_case "every long option of the cli/*.c option tables is in postmux(1)"
page=$(plain "$MAN_DIR/postmux.1")
opts=$(cat "$PMX_ROOT"/cli/*.c |
       sed -nE 's/.*\{[[:space:]]*"([a-z][a-z-]*)",[[:space:]]*(no|required|optional)_argument.*/\1/p' |
       sort -u)
nopts=$(wc -w <<<"$opts")
((nopts >= 20)) || t_fail "found only $nopts long options in cli/*.c"
for o in $opts; do
    grep -qE -- "--$o([^a-z-]|$)" <<<"$page" || t_fail "postmux(1) does not mention --$o (cli/*.c)"
done

t_case "every doc the code cites exists (docs/*.md, man pages, README Install)"
cited=$(grep -rhoE 'docs/[a-z_/-]+\.md' "$PMX_ROOT"/{lib,config,daemon,workers,submission,webhooks,http,inbound,queue,dkim,smtp,sql,routing,cli,tests,scripts} \
            --include='*.c' --include='*.h' --include='*.sh' --include='*.sql' --include='*.py' 2>/dev/null |
        sort -u)
[[ -n $cited ]] || t_fail "found no docs/*.md citation at all (the grep is broken?)"
for d in $cited; do
    [[ $d == docs/pending/* ]] && continue
    [[ -s $PMX_ROOT/$d ]] || t_fail "$d is cited but does not exist"
done
for p in "${PAGES[@]}"; do
    name=${p%.*} sect=${p##*.}
    [[ -s $MAN_DIR/$p ]] || t_fail "$name($sect) has no man/$p"
done
grep -qE '^## Install$' "$PMX_ROOT/README.md" || t_fail "README.md has no '## Install' section"

t_case "make install puts the man pages under PREFIX/share/man"
if [[ ! -x $PMX_ROOT/build/release/bin/postmuxd || ! -x $PMX_ROOT/build/release/bin/postmux ]]; then
    t_fail "no release build: run make first"
else
    root=$T_DIR/root
    t_run make -s -C "$PMX_ROOT" install DESTDIR="$root" PREFIX=/usr
    t_expect_rc 0
    for p in "${PAGES[@]}"; do
        sect=${p##*.}
        got=$root/usr/share/man/man$sect/$p
        if [[ -f $got ]]; then
            cmp -s "$got" "$MAN_DIR/$p" || t_fail "$got differs from man/$p"
        else
            t_fail "make install did not write $got"
        fi
    done
    if command -v man >/dev/null 2>&1; then
        t_run env MANPATH="$root/usr/share/man" MANWIDTH=80 man postmux.conf
        t_expect_rc 0
        t_expect_match "$T_OUT" 'master_key_file' "man postmux.conf from the installed tree"
    fi
fi

t_done
