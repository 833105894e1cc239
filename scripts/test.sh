#!/usr/bin/env bash
# Install what is missing, build, and run every test: the C unit tests, then
# the mount tests against the fake API, with a plain and a sanitized build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
build_avalafs

echo "== C unit tests"
meson test -C build --print-errorlogs

echo "== mount tests under AddressSanitizer and UBSan"
[ -f build-asan/build.ninja ] ||
	meson setup build-asan -Db_sanitize=address,undefined >/dev/null
meson compile -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
AVALAFS_BIN="$PWD/build-asan/avalafs" /usr/bin/python3 -m pytest -q tests \
	-p no:cacheprovider

echo "== mount tests"
exec /usr/bin/python3 -m pytest -q tests -p no:cacheprovider
