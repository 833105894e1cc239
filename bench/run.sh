#!/usr/bin/env bash
# Benchmark avalafs against curl on a local nginx: installs what is missing, builds,
# runs bench/bench.py (arguments go to it: --rows 1,L); the table goes to stdout
# and bench/results.md, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
AVALAFS_DEPS="$AVALAFS_DEPS curl nginx openssl"

workdir=
bench_pid=

# Stop bench.py, then whatever it left behind: its mounts and the processes
# whose pid files are in the workdir.
cleanup() {
	local pid_file
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	[ -n "$workdir" ] || return 0
	for mnt in "$workdir"/mnt* "$workdir"/node-*; do
		if mountpoint -q "$mnt"; then
			fusermount3 -u -z "$mnt" || true
		fi
	done
	for pid_file in "$workdir"/*.pid; do
		[ -f "$pid_file" ] && kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
	done
	rm -rf "$workdir"
}

install_deps >&2
build_avalafs >&2
workdir=$(mktemp -d /tmp/avalafs-bench.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
/usr/bin/python3 bench/bench.py --binary build/avalafs --workdir "$workdir" "$@" &
bench_pid=$!
wait "$bench_pid"
