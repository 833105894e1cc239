# Fixtures that start the fake Avala API and really mount avalafs on it.
# Every mount is torn down with fusermount3 -u -z, then the process is killed.
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_avala.py")
BINARY = os.environ.get("AVALAFS_BIN", os.path.join(ROOT, "build", "avalafs"))
KEY = "test-key"


def fuse_missing():
    """Why this machine cannot mount a FUSE filesystem, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return "/dev/fuse cannot be opened: " + e.strerror
    if not shutil.which("fusermount3"):
        return "no fusermount3 (Debian package fuse3)"
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes seconds of waiting: deadlines, several mounts "
        "(meson suite 'slow')")
    config.addinivalue_line(
        "markers", "drops_caches: drops the kernel's caches, so runs while no "
        "other mount test does (meson test 'mount-drops-caches')")
    config.addinivalue_line(
        "markers", "fuse: mounts, so needs /dev/fuse and fusermount3")


def pytest_collection_modifyitems(config, items):
    """Tests that mount are skipped, with the reason, where nothing can be
    mounted; AVALAFS_REQUIRE_FUSE=1 (CI) makes that a failure instead."""
    mounting = [i for i in items
                if "mount_factory" in getattr(i, "fixturenames", ())
                or i.get_closest_marker("fuse")]
    why = fuse_missing()
    if not why or not mounting:
        return
    if os.environ.get("AVALAFS_REQUIRE_FUSE") == "1":
        raise pytest.UsageError("mount tests cannot run here: " + why)
    for i in mounting:
        i.add_marker(pytest.mark.skip(reason="cannot mount: " + why))


def escape_key(raw: bytes) -> bytes:
    """The name rules 1-2 of DESIGN section 3, for expected names."""
    if raw == b".":
        return b"%2E"
    if raw == b"..":
        return b"%2E%2E"
    out = bytearray()
    for c in raw:
        if c in b"/%" or c < 0x20 or c == 0x7F:
            out += b"%%%02X" % c
        else:
            out.append(c)
    return bytes(out)


class Fake:
    """A running fake_avala.py and its control path."""

    def __init__(self, args, tmp):
        self.tmp = tmp
        # its own: a test may start more than one fake
        port_file = tempfile.mktemp(prefix="port-", dir=tmp)
        self.log = open(port_file + ".log", "wb")
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, FAKE, "--port-file", port_file, "--quiet"] + args,
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("fake_avala.py did not start")
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        self.base = "http://127.0.0.1:%d" % self.port
        self.api_url = self.base + "/api/v1"

    def call(self, path, body=None, method=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method or ("POST" if data else "GET"))
        if data:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        if raw[:1] in (b"{", b"["):
            return json.loads(raw.decode("utf-8", "surrogateescape"))
        return raw

    def file_bytes(self, dataset, uid, kind="data"):
        """The current bytes of a file, straight from the fake."""
        url = "%s/_fake/file/%s/%s/%s" % (self.base, dataset, uid, kind)
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()

    def stats(self):
        return self.call("/_fake/stats")

    def counts(self):
        return self.stats()["counts"]

    def reset(self):
        self.call("/_fake/reset", {})

    def fault(self, **spec):
        self.call("/_fake/fault", spec)

    def truth(self, dataset):
        return self.call("/_fake/truth/" + dataset)

    def set_key(self, key):
        self.call("/_fake/key", {"key": key})

    def delete(self, dataset, uid):
        self.call("/_fake/delete", {"dataset": dataset, "uid": uid})

    def expire(self):
        self.call("/_fake/expire", {})

    def reupload(self, dataset, uid):
        """New bytes of the same size for the item's data, and a new
        updated_at; returns that."""
        return self.call("/_fake/reupload", {"dataset": dataset,
                                             "uid": uid})["updated_at"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def unmount(path):
    subprocess.run(["fusermount3", "-u", "-z", path],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Mount:
    """avalafs running in the foreground on a fresh directory."""

    def __init__(self, fake, tmp, options, env=None, key=KEY, wait=True,
                 debug=False):
        self.path = tempfile.mkdtemp(prefix="mnt-", dir=tmp)
        self.stderr_path = os.path.join(tmp, "avalafs-%d.log" % id(self))
        self.stderr = open(self.stderr_path, "wb")
        # every mount keeps its listings in the test's own folder, unless
        # the test names one (a remount that must find them)
        if not any(o.startswith("cache_dir=") for o in options):
            options = ["cache_dir=" + tempfile.mkdtemp(prefix="cache-",
                                                       dir=tmp)] + list(options)
        opts = ["api_url=" + fake.api_url] + list(options)
        full_env = dict(os.environ)
        full_env.pop("AVALA_API_KEY", None)
        full_env.pop("AVALA_BASE_URL", None)
        if key is not None:
            full_env["AVALA_API_KEY"] = key
        full_env.update(env or {})
        self.cmd = [BINARY, "-d" if debug else "-f", "-o", ",".join(opts),
                    self.path]
        self.proc = subprocess.Popen(self.cmd, env=full_env,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        if wait:
            self.wait_mounted()

    def wait_mounted(self, timeout=20):
        deadline = time.time() + timeout
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError("avalafs exited %d: %s" % (
                    self.proc.returncode, self.log()))
            if time.time() > deadline:
                raise RuntimeError("avalafs did not mount: " + self.log())
            time.sleep(0.05)

    def log(self):
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def cache_stats(self):
        """The cache counters avalafs logs on SIGUSR1."""
        before = self.log().count("stats: ")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 10
        while self.log().count("stats: ") == before:
            assert time.time() < deadline, "no stats line: " + self.log()
            time.sleep(0.02)
        line = [l for l in self.log().splitlines() if "stats: " in l][-1]
        return json.loads(line.split("stats: ", 1)[1])

    def wait_idle(self, timeout=30):
        """Wait until no fetch is queued or running and none started for
        0.2 s (the kernel's own readahead may still be sending reads)."""
        deadline = time.time() + timeout
        last = None
        while True:
            st = self.cache_stats()
            if st["jobs"] == 0 and st["fetches"] == last:
                return
            last = st["fetches"] if st["jobs"] == 0 else None
            assert time.time() < deadline, "fetches still running: %s" % st
            time.sleep(0.2)

    def alive(self):
        return self.proc.poll() is None and os.path.ismount(self.path)

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def stop(self):
        """Unmount; returns the exit code (0 for a clean unmount)."""
        unmount(self.path)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def tmpdir_short():
    d = tempfile.mkdtemp(prefix="avalafs-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake_factory(tmpdir_short):
    fakes = []

    def start(*args):
        f = Fake(list(args), tmpdir_short)
        fakes.append(f)
        return f

    yield start
    for f in fakes:
        f.stop()


@pytest.fixture
def mount_factory(tmpdir_short):
    mounts = []

    def start(fake, *options, **kw):
        m = Mount(fake, tmpdir_short, options, **kw)
        mounts.append(m)
        return m

    yield start
    bad = []
    for m in mounts:
        if m.stop() != 0:
            bad.append("avalafs exited %s after unmount:\n%s" % (
                m.proc.returncode, m.log()[-4000:]))
    if bad:
        pytest.fail("\n".join(bad))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
