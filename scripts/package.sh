#!/usr/bin/env bash
# Build the Debian package from a copy of the tree into build/dist/ and check
# the RPM spec: scripts/package.sh
# "scripts/package.sh check" then installs the .deb, uses the installed
# binary (--version, the man page, the systemd units, a mount with
# mount -t fuse.avalafs against the fake API) and removes the package.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps "$AVALAFS_DEPS $AVALAFS_PKG_DEPS"
version=$(sed -n "s/^  version: '\(.*\)',$/\1/p" meson.build)
dist=$PWD/build/dist
work=$(mktemp -d)
fake=
installed=

fail() {
	echo "package: $*" >&2
	exit 1
}

# never leaves a mount, a fake API or the package behind, and never fails
cleanup() {
	local rc=$?

	if [ -d "$work/mnt" ]; then
		umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || :
	fi
	[ -z "$fake" ] || kill "$fake" 2>/dev/null || :
	if [ "$rc" -ne 0 ] && [ -s "$work/fake.log" ]; then
		echo "-- fake API log" >&2
		tail -n 30 "$work/fake.log" >&2 || :
	fi
	[ -z "$installed" ] ||
		apt-get remove -y -qq --purge avalafs >/dev/null 2>&1 || :
	rm -rf "$work" || :
}
trap cleanup EXIT

# the tree as git knows it (tracked and new files), never the build dirs
src=$work/avalafs-$version
mkdir -p "$src" "$dist"
if git rev-parse --git-dir >/dev/null 2>&1; then
	# a file deleted but not yet committed is listed too: skip it
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			if [ -e "$f" ] || [ -L "$f" ]; then
				printf '%s\0' "$f"
			fi
		done | xargs -0 cp --parents -P -t "$src"
else
	tar -c --exclude='./build*' --exclude=./mnt . | tar -x -C "$src"
fi

echo "== rpm: avalafs.spec"
rpmspec -P packaging/rpm/avalafs.spec >/dev/null
# Debian's rpm has no %meson macros: give it the essence of Fedora's and
# build the binary RPM for real, without dependency checks
cat >"$work/macros.meson" <<'MACROS'
%_unitdir /usr/lib/systemd/system
%__meson /usr/bin/meson
%meson %{__meson} setup --buildtype=plain --prefix=%{_prefix} --libdir=%{_libdir} --mandir=%{_mandir} --sysconfdir=%{_sysconfdir} %{_vpath_builddir}
%meson_build %{__meson} compile -C %{_vpath_builddir}
%meson_install DESTDIR=%{buildroot} %{__meson} install -C %{_vpath_builddir} --no-rebuild
%meson_test %{__meson} test -C %{_vpath_builddir} --print-errorlogs
MACROS
mkdir -p "$work/rpm/SOURCES"
tar -C "$work" -czf "$work/rpm/SOURCES/avalafs-$version.tar.gz" \
	"avalafs-$version"
rpmbuild -bb --nodeps --load="$work/macros.meson" \
	--define "_topdir $work/rpm" packaging/rpm/avalafs.spec \
	>"$work/rpmbuild.log" 2>&1 || { tail -n 30 "$work/rpmbuild.log"; exit 1; }
rpm=$(find "$work/rpm/RPMS" -name "avalafs-$version-*.rpm")
rpm -qlp "$rpm"
cp "$rpm" "$dist/"

echo "== deb: dpkg-buildpackage -us -uc -b"
cp -r packaging/debian "$src/debian"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/deb.log" 2>&1 ||
	{ tail -n 30 "$work/deb.log"; exit 1; }
deb=$(ls "$work"/avalafs_"$version"_*.deb)
cp "$deb" "$dist/"
deb=$dist/$(basename "$deb")
dpkg-deb -c "$deb" | awk '{print $6}'
echo "built $deb"
[ "${1:-}" = check ] || exit 0

echo "== deb: install, use, remove"
installed=1
apt-get install -y -qq "$deb" >/dev/null
[ "$(command -v avalafs)" = /usr/bin/avalafs ] ||
	fail "avalafs is $(command -v avalafs), not /usr/bin/avalafs"
avalafs --version | head -n 1 | grep -qx "avalafs $version" ||
	fail "avalafs --version does not say $version"
man -w avalafs | grep -q '^/usr/share/man/man1/avalafs.1' ||
	fail "man -w avalafs finds no page"
systemd-analyze verify /lib/systemd/system/avalafs@.service \
	/usr/share/doc/avalafs/examples/mnt-avala.mount
[ -f /etc/avalafs/mnt-avala.conf.example ] ||
	fail "no /etc/avalafs/mnt-avala.conf.example"
ls /usr/share/doc/avalafs/examples/imagefolder.py* >/dev/null ||
	fail "the example loader is not shipped"
ls /usr/share/doc/avalafs/examples/avalafs-tier.conf* \
	/usr/share/doc/avalafs/examples/avalafs-tier.js* >/dev/null ||
	fail "the cache tier's configuration is not shipped"

/usr/bin/python3 tests/fake_avala.py --quiet --port-file "$work/port" \
	--dataset demo/cars:items=5 >/dev/null 2>"$work/fake.log" &
fake=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "the fake API did not start"
base=http://127.0.0.1:$(cat "$work/port")
echo test-key >"$work/key"
chmod 600 "$work/key"
mkdir "$work/mnt"
# README's fstab line, with the fake's API and the default cache folder
echo "avalafs $work/mnt fuse.avalafs ro,_netdev,nofail,allow_other,api_key_file=$work/key,api_url=$base/api/v1,dataset=demo/cars 0 0" \
	>"$work/fstab"
mount -T "$work/fstab" "$work/mnt"
[ -d /var/cache/avalafs/listings ] ||
	fail "a root mount keeps nothing in /var/cache/avalafs"
uid=$(curl -s "$base/_fake/truth/demo/cars" |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["uid"])')
item=$(grep -l "\"$uid\"" "$work"/mnt/demo/cars/items/*/metadata.json) ||
	fail "no metadata.json names $uid"
cmp <(curl -s "$base/_fake/file/demo/cars/$uid/data") "$(dirname "$item")"/data*
n=$(ls "$work/mnt/demo/cars/items" | wc -l)
[ "$n" = 5 ] || fail "$n items listed, not 5"
umount "$work/mnt"
for _ in $(seq 100); do pgrep -f -- "$work/mnt" >/dev/null || break; sleep 0.1; done
if pgrep -f -- "$work/mnt" >/dev/null; then
	fail "the daemon is still running after umount"
fi
echo "mounted with mount -t fuse.avalafs, read $uid, unmounted"

apt-get remove -y -qq --purge avalafs >/dev/null
installed=
if [ -e /usr/bin/avalafs ] || dpkg -s avalafs >/dev/null 2>&1; then
	fail "avalafs is still installed after apt-get remove --purge"
fi
[ ! -e /var/cache/avalafs ] || fail "purge left /var/cache/avalafs"
[ ! -e /etc/avalafs ] || fail "purge left /etc/avalafs"
echo "installed, used and removed $(basename "$deb")"
