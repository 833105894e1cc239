#!/usr/bin/env bash
# Install what is missing, build, start the fake Avala API with a sample
# dataset, and mount it on ./mnt. "scripts/demo.sh stop" takes it all down.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
state=build/demo
mnt=$PWD/mnt

# Unmount (lazily, saying so, when a shell is still inside) and stop the
# fake API whatever happened to the mount.
stop() {
	if mountpoint -q "$mnt" && ! fusermount3 -u "$mnt" 2>/dev/null; then
		echo "$mnt is busy (a shell in it?): unmounted lazily; cd out of it" >&2
		fusermount3 -u -z "$mnt" || true
	fi
	if [ -f "$state/fake.pid" ]; then
		kill "$(cat "$state/fake.pid")" 2>/dev/null || true
		rm -f "$state/fake.pid"
	fi
}

if [ "${1:-}" = stop ]; then
	stop
	echo "Unmounted $mnt and stopped the fake API."
	exit 0
fi

install_deps
build_avalafs
stop
mkdir -p "$state" "$mnt"
# the port of the last run, when free: the listings kept on disk are of
# one API origin, so a new port each run would pile up another cache
port=$(cat "$state/port" 2>/dev/null || echo 0)
rm -f "$state/port"
if [ "$port" != 0 ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	port=0
fi
setsid nohup /usr/bin/python3 tests/fake_avala.py --quiet --port "$port" \
	--port-file "$state/port" \
	--dataset demo/cars:items=24,sequences=2,images=1,classes=3 \
	--dataset demo/scans:items=5,dialect=sdk,images=1 \
	>/dev/null 2>"$state/fake.log" &
echo $! >"$state/fake.pid"
for _ in $(seq 100); do [ -s "$state/port" ] && break; sleep 0.1; done
[ -s "$state/port" ] || { echo "the fake API did not start" >&2; exit 1; }
api="http://127.0.0.1:$(cat "$state/port")/api/v1"

AVALA_API_KEY=test-key ./build/avalafs \
	-o "api_url=$api,dataset=demo/cars,cache_dir=$PWD/$state/cache" "$mnt"

cd "$mnt/.."
echo "\$ ls mnt mnt/demo mnt/demo/cars"
ls mnt mnt/demo mnt/demo/cars
echo
echo "\$ find mnt/demo/cars/files | head"
find mnt/demo/cars/files | head
first=$(ls mnt/demo/cars/items | head -n 1)
echo
echo "\$ ls -l 'mnt/demo/cars/items/$first'"
ls -l "mnt/demo/cars/items/$first"
echo
echo "\$ cat 'mnt/demo/cars/items/$first/metadata.json'"
cat "mnt/demo/cars/items/$first/metadata.json"
image=$(find mnt/demo/cars/files -type f | head -n 1)
if command -v identify >/dev/null; then
	echo
	echo "\$ identify '$image'"
	identify "$image"
fi
echo
echo "The sample datasets are mounted on ./mnt (the fake API is at $api)."
echo "Its pictures: mnt/demo/cars/files/ (by key), mnt/demo/cars/thumbnails/"
echo "(the same names, smaller), mnt/demo/cars/by-status/<status>/. Open them"
echo "in an image viewer, e.g.: eog mnt/demo/cars/files/cars  (or feh, or"
echo "xdg-open on a file)."
echo "Unmount with: fusermount3 -u ./mnt   (or: scripts/demo.sh stop, which"
echo "also stops the fake API)"
