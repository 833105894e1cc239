# Debian packages avalafs builds, tests and demonstrates with; sourced by the
# other scripts. install_deps [LIST] installs the missing ones (root or sudo).
# What building and running it takes (the demo needs no more):
AVALAFS_DEPS="gcc libc6-dev pkg-config meson ninja-build libfuse3-dev fuse3
libcurl4-openssl-dev libssl-dev libcjson-dev uthash-dev libsqlite3-dev
libxxhash-dev libsystemd-dev libmicrohttpd-dev python3"
# what the tests, the sanitizers and the format check add
AVALAFS_DEV_DEPS="python3-pytest curl rsync clang libclang-rt-14-dev
clang-format nginx libnginx-mod-http-js openssl"
# the clients the mount tests read with
AVALAFS_TEST_DEPS="python3-pil python3-torchvision imagemagick attr
prometheus"
# and what scripts/package.sh builds and checks the packages with
AVALAFS_PKG_DEPS="build-essential debhelper rpm man-db systemd procps curl"

install_deps() {
	local missing=() p
	for p in ${1:-$AVALAFS_DEPS}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "Installing: ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			"${missing[@]}" >/dev/null
}

# Configure build directory $1 (build/ by default) with the meson options
# that follow, the first time or again, and build it.
build_avalafs() {
	local dir=${1:-build}
	[ $# -eq 0 ] || shift
	local log
	log=$(mktemp)
	if [ -f "$dir/build.ninja" ]; then
		[ $# -eq 0 ] || meson configure "$dir" "$@" >"$log" 2>&1
	else
		meson setup "$dir" "$@" >"$log" 2>&1
	fi && meson compile -C "$dir" >>"$log" 2>&1 ||
		{ tail -n 40 "$log" >&2; rm -f "$log"; return 1; }
	rm -f "$log"
}
