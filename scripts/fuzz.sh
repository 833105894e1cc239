#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and run
# each for a bounded time on its seed corpus: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
out=build-fuzz
mkdir -p "$out"
[ -f build/config.h ] || meson setup build >/dev/null
flags="-std=gnu11 -g -O1 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-Isrc -Ibuild $(pkg-config --cflags libcjson libcurl)"
libs="$(pkg-config --libs libcjson libcurl) -lpthread -lm"
# shellcheck disable=SC2086
clang $flags tests/fuzz/fuzz_page.c src/api.c src/item.c src/names.c \
	src/log.c src/http.c src/key.c $libs -o "$out/fuzz_page"
# shellcheck disable=SC2086
clang $flags tests/fuzz/fuzz_names.c src/names.c -o "$out/fuzz_names"
for target in page names; do
	work=$(mktemp -d)
	echo "== fuzz_$target for ${seconds}s"
	if ! "$out/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -artifact_prefix="$out/" \
		"$work" "tests/fuzz/corpus/$target" >"$out/$target.log" 2>&1; then
		tail -n 40 "$out/$target.log"
		echo "fuzz_$target found a bug; the input is in $out/"
		exit 1
	fi
	grep -E "^Done" "$out/$target.log"
	rm -rf "$work"
done
