#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz (meson -Dfuzz=true, clang, ASan +
# UBSan) and run each for a bounded time on its seed corpus:
# scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
out=build-fuzz
[ -f "$out/build.ninja" ] ||
	CC=clang meson setup "$out" -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dwerror=true >/dev/null
meson compile -C "$out" tests/fuzz/fuzz_page tests/fuzz/fuzz_names >/dev/null
for target in page names; do
	work=$(mktemp -d)
	echo "== fuzz_$target for ${seconds}s"
	if ! "$out/tests/fuzz/fuzz_$target" -max_total_time="$seconds" \
		-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/" \
		"$work" "tests/fuzz/corpus/$target" >"$out/$target.log" 2>&1; then
		tail -n 40 "$out/$target.log"
		echo "fuzz_$target found a bug; the input is in $out/"
		exit 1
	fi
	grep -E "^Done" "$out/$target.log"
	rm -rf "$work"
done
