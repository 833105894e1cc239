#!/usr/bin/env bash
# Install what is missing, build, and run every test suite (unit, mount,
# slow) with an AddressSanitizer + UBSan build, then with the plain build.
# The last line counts them all: "N passed, N failed".
# Arguments go to both "meson test" runs: scripts/test.sh --suite unit
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps "$AVALAFS_DEPS $AVALAFS_DEV_DEPS $AVALAFS_TEST_DEPS"
build_avalafs build -Dwerror=true
build_avalafs build-asan -Db_sanitize=address,undefined -Dwerror=true

rc=0
echo "== under AddressSanitizer and UBSan (build-asan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs "$@" || rc=1
echo "== plain build (build)"
meson test -C build --print-errorlogs "$@" || rc=1
/usr/bin/python3 tests/summary.py build-asan build || rc=1
exit $rc
