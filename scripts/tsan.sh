#!/usr/bin/env bash
# Run the mount tests that drive the engine, the cache and the inode table
# hardest under ThreadSanitizer: a data race makes the mount exit non-zero,
# which fails its test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
build_avalafs build-tsan -Db_sanitize=thread -Dwerror=true
TSAN_OPTIONS=halt_on_error=0:exitcode=66 \
	meson test -C build-tsan --print-errorlogs mount-stream mount-tree \
		mount-limits mount-disk_cache mount-prefetch mount-drops-caches \
		mount-trust mount-metrics
