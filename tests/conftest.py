# Fixtures that start the fake Avala API and really mount avalafs on it.
# Every mount is torn down with fusermount3 -u -z, then the process is killed.
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_avala.py")
BINARY = os.path.abspath(os.environ.get("AVALAFS_BIN",
                                       os.path.join(ROOT, "build", "avalafs")))
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

    # how the control calls check an https fake (None: plain http)
    context = None

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
        with urllib.request.urlopen(req, timeout=30,
                                    context=self.context) as r:
            raw = r.read()
        if raw[:1] in (b"{", b"["):
            return json.loads(raw.decode("utf-8", "surrogateescape"))
        return raw

    def file_bytes(self, dataset, uid, kind="data"):
        """The current bytes of a file, straight from the fake."""
        url = "%s/_fake/file/%s/%s/%s" % (self.base, dataset, uid, kind)
        with urllib.request.urlopen(url, timeout=60,
                                    context=self.context) as r:
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

    def kernel_readahead_kb(self, want, timeout=5):
        """The kernel's readahead on the mount (KiB), once it is @want or
        @timeout seconds passed: avalafs raises it after INIT."""
        dev = os.stat(self.path).st_dev
        path = "/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(dev),
                                                       os.minor(dev))
        deadline = time.time() + timeout
        while True:
            with open(path) as f:
                kb = int(f.read())
            if kb == want or time.time() > deadline:
                return kb
            time.sleep(0.02)

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


def read_all(paths, truth, workers=8, in_order=False):
    """Read every file of @paths (by uid) with @workers threads, as a
    loader's pool does (each taking the next of one list: @paths' own order
    with @in_order); the files whose bytes are not the fake's, with why."""
    want = {t["uid"]: t["files"]["data"]["sha256"] for t in truth}
    bad, todo, lock = [], list(paths.items()), threading.Lock()

    def work():
        while True:
            with lock:
                if not todo:
                    return
                uid, p = todo.pop(0 if in_order else -1)
            try:
                if sha256_file(p) != want[uid]:
                    bad.append((uid, "bytes"))
            except OSError as e:
                bad.append((uid, e))

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bad


# ---------------------------------------------------------------- TLS
# Certificates made at test time with the openssl command, the fake serving
# HTTPS, and nginx serving a folder over HTTPS.

PKI_CONFIG = """\
# all `openssl req` and `openssl ca` need here, nothing from the system's
[ca]
default_ca = signer
[signer]
database = $ENV::CA_DB/index.txt
serial = $ENV::CA_DB/serial
new_certs_dir = $ENV::CA_DB
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# the names every server certificate but wrong_host is for
TLS_NAMES = "IP:127.0.0.1,DNS:localhost"


class Cert:
    """A certificate (PEM, the leaf alone) and its private key."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key


class Pki:
    """Two private CAs and server certificates, made in @folder:
    ca (ca.pem): the CA the tests trust with ca_file=;
    server: 127.0.0.1 and localhost, signed by ca;
    other_ca, other: a second CA and a certificate it signed for the same
      names (valid, but not from the CA the mount trusts);
    expired: the same names, signed by ca, valid only in January 2020;
    wrong_host: signed by ca for DNS:wrong.example alone."""

    def __init__(self, folder):
        self.folder = folder
        with open(self.path("openssl.cnf"), "w") as f:
            f.write(PKI_CONFIG)
        self.ca = self.make_ca("ca", "avalafs test CA")
        self.other_ca = self.make_ca("other-ca", "avalafs other CA")
        self.server = self.make_leaf("server", "ca", TLS_NAMES)
        self.other = self.make_leaf("other", "other-ca", TLS_NAMES)
        self.expired = self.make_leaf("expired", "ca", TLS_NAMES,
                                      ("20200101000000Z", "20200201000000Z"))
        self.wrong_host = self.make_leaf("wrong-host", "ca",
                                         "DNS:wrong.example")

    def path(self, name):
        return os.path.join(self.folder, name)

    def openssl(self, *args, ca="ca", san="DNS:unused"):
        """Run openssl in the folder; CA_DB and SAN fill in the config."""
        env = dict(os.environ, OPENSSL_CONF=self.path("openssl.cnf"),
                   CA_DB=self.path(ca + ".db"), SAN=san)
        r = subprocess.run(["openssl"] + list(args), cwd=self.folder,
                           env=env, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (
                " ".join(args), r.stderr.decode(errors="replace")))

    def new_key(self, name, *req):
        """A P-256 key in name.key, and `openssl req` on it with @req."""
        self.openssl("req", "-config", "openssl.cnf", "-newkey", "ec",
                     "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", name + ".key", *req)

    def make_ca(self, name, common_name):
        """A self-signed CA in name.pem, with the database `openssl ca`
        keeps for it in name.db/; returns the path of name.pem."""
        self.new_key(name, "-x509", "-extensions", "ca_ext", "-days", "3650",
                     "-subj", "/CN=" + common_name, "-out", name + ".pem")
        os.mkdir(self.path(name + ".db"))
        open(self.path(name + ".db/index.txt"), "w").close()
        with open(self.path(name + ".db/serial"), "w") as f:
            f.write("1000\n")
        return self.path(name + ".pem")

    def make_leaf(self, name, ca, names, dates=None):
        """A server certificate for @names (subjectAltName syntax) signed
        by @ca, valid for a year from now or between @dates (openssl ca
        takes dates in the past, openssl x509 -req does not)."""
        self.new_key(name, "-new", "-subj", "/CN=avalafs test server",
                     "-out", name + ".csr")
        validity = (["-startdate", dates[0], "-enddate", dates[1]] if dates
                    else ["-days", "365"])
        self.openssl("ca", "-batch", "-config", "openssl.cnf", "-notext",
                     "-extensions", "leaf", "-cert", ca + ".pem",
                     "-keyfile", ca + ".key", "-in", name + ".csr",
                     "-out", name + ".pem", *validity, ca=ca, san=names)
        return Cert(self.path(name + ".pem"), self.path(name + ".key"))


@pytest.fixture(scope="session")
def pki():
    """The test certificates (see Pki), made once per session."""
    folder = tempfile.mkdtemp(prefix="avalafs-pki-")
    yield Pki(folder)
    shutil.rmtree(folder, ignore_errors=True)


class TlsFake(Fake):
    """fake_avala.py serving HTTPS with @cert: api_url is
    https://127.0.0.1:PORT/api/v1, and so are its file URLs. The tests' own
    control calls do not check the certificate (some certificates are there
    to fail avalafs's checks)."""

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def __init__(self, args, tmp, cert):
        super().__init__(list(args) + ["--tls-cert", cert.cert,
                                       "--tls-key", cert.key], tmp)
        self.cert = cert
        self.base = "https://127.0.0.1:%d" % self.port
        self.api_url = self.base + "/api/v1"


@pytest.fixture
def tls_fake_factory(tmpdir_short, pki):
    """start(*args, cert=pki.server): a TlsFake with fake_avala.py @args."""
    fakes = []

    def start(*args, cert=None):
        f = TlsFake(args, tmpdir_short, cert or pki.server)
        fakes.append(f)
        return f

    yield start
    for f in fakes:
        f.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx serving @root at https://127.0.0.1:PORT/ with @cert, from a
    config, pid and logs of its own in @workdir; a connection is closed
    after @keepalive_requests requests. Its access log has one line per
    request: the connection's serial number, $ssl_session_reused ("r" when
    the TLS session was resumed, else "."), the status and the URI."""

    def __init__(self, workdir, root, cert, keepalive_requests=100000):
        self.keepalive_requests = keepalive_requests
        self.workdir = workdir
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.access_log = os.path.join(workdir, "access.log")
        config = os.path.join(workdir, "nginx.conf")
        with open(config, "w") as f:
            f.write(self.config(root, cert))
        self.errors = open(os.path.join(workdir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            ["nginx", "-p", workdir, "-c", config,
             "-e", os.path.join(workdir, "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.errors)
        deadline = time.time() + 10
        while not self.answers():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("nginx did not start: " + self.error_log())
            time.sleep(0.05)

    def config(self, root, cert):
        w = self.workdir
        # as root, workers read the test's private folders as root too
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join("    %s_temp_path %s/%s_temp;\n" % (k, w, k)
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi",
                                 "scgi"))
        return (
            "%sdaemon off;\nworker_processes 2;\npid %s/nginx.pid;\n"
            "error_log %s/error.log;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    log_format tls '$connection $ssl_session_reused $status "
            "$request_uri';\n"
            "    access_log %s tls;\n"
            "    keepalive_requests %d;\n    keepalive_timeout 60s;\n"
            "    default_type application/octet-stream;\n"
            "%s"
            "    server {\n"
            "        listen 127.0.0.1:%d ssl;\n"
            "        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
            "        ssl_session_cache shared:tls:1m;\n"
            "        ssl_session_timeout 10m;\n"
            "        root %s;\n"
            "    }\n"
            "}\n" % (user, w, w, self.access_log, self.keepalive_requests,
                      temp, self.port,
                      cert.cert, cert.key, root))

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=1):
                return True
        except OSError:
            return False

    def error_log(self):
        path = os.path.join(self.workdir, "error.log")
        if not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    def requests(self):
        """The access log so far as (connection, reused, status, uri)."""
        if not os.path.exists(self.access_log):
            return []
        with open(self.access_log) as f:
            return [tuple(line.split(" ", 3)) for line in f.read().splitlines()]

    def connections(self):
        """{connection: whether its TLS session was resumed}, for the
        connections that made a request."""
        return {c: reused == "r" for c, reused, _, _ in self.requests()}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errors.close()


@pytest.fixture
def nginx_factory(tmpdir_short, pki):
    """start(root, cert=pki.server, **kw): an Nginx serving the folder
    @root (kw: keepalive_requests)."""
    servers = []

    def start(root, cert=None, **kw):
        n = Nginx(tempfile.mkdtemp(prefix="nginx-", dir=tmpdir_short), root,
                  cert or pki.server, **kw)
        servers.append(n)
        return n

    yield start
    for n in servers:
        n.stop()
