#!/usr/bin/env bash
# tests/bench/feedback.sh — the report parser's benchmark (docs/feedback.md):
# tests/tools/fb_corpus parses the bounce corpus (tests/corpus/bounces/samples, a few
# hundred real DSNs, ARF reports, auto-replies and plain-text bounces) round-robin
# on one thread, pinned to one core, for FB_BENCH_SECONDS, with the built-in
# classification rules. Prints reports per CPU second; the target is 20,000 a
# second on one core. Exits 1 below it.
#
#   bash tests/bench/feedback.sh          (after `make`; uses build/release)
#   FB_BENCH_SECONDS=10 FB_BENCH_BUILD=build/release FB_BENCH_TARGET=20000
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${FB_BENCH_SECONDS:-10}
target=${FB_BENCH_TARGET:-20000}
build=${FB_BENCH_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
tool=$build/tools/fb_corpus
if [[ $build == "$root/build/release" ]]; then
    make -C "$root" -j2 build/release/tools/fb_corpus >/dev/null || exit 1
fi
if [[ ! -x $tool ]]; then
    echo "feedback bench: no $tool (run make first)" >&2
    exit 1
fi
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
out=$("${pin[@]}" "$tool" bench "$root/tests/corpus/bounces" "$secs") || {
    echo "feedback bench: fb_corpus failed" >&2
    exit 1
}
echo "$out" | sed 's/^/# /'
rate=$(sed -n 's/^reports\/s \([0-9]*\).*/\1/p' <<<"$out")
echo "==================== feedback parser bench ===================="
printf '%-40s %s\n' "reports parsed per CPU second (1 core)" "$rate"
printf '%-40s %s\n' "target" "$target"
echo "================================================================"
((rate >= target)) || { echo "feedback bench: below the target" >&2; exit 1; }
