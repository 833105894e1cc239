# Many machines, one download (DESIGN section 8): mounts read data through a
# real nginx running the shipped tier configuration (packaging/nginx), with
# test values filled in, the fake as origin. The origin is asked once per
# object however many mounts read it, a new listing (new signatures) still
# hits, a re-upload misses once, a tier that is down or stalls hands the
# reads to the origin within the deadline, a wrong token is refused at
# start, and bytes that do not match are asked for again, never returned.
import base64
import os
import socket
import urllib.request
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import KEY, ROOT, free_port, sha256_file, unmount
from conftest import read_all as read_files

from test_costs import files_of

DS = "acme/cars"
TOKEN = "node:s3cr3t-t0ken"
CONF = os.path.join(ROOT, "packaging", "nginx", "avalafs-tier.conf")
JS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"


class Tier:
    """nginx with the shipped tier configuration, its values set for the
    test: port, token, the fake as the one origin, cache and logs in @d."""

    def __init__(self, d, origin_hostport, origin_url, token=TOKEN, ca=None):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        with open(CONF) as f:
            conf = f.read()
        basic = base64.b64encode(token.encode()).decode()
        conf = conf.replace('"Basic CHANGE-ME" 1;', '"Basic %s" 1;' % basic)
        conf = conf.replace(
            '"example-bucket.s3.amazonaws.com" '
            '"https://example-bucket.s3.amazonaws.com";',
            '"%s" "%s";' % (origin_hostport, origin_url))
        conf = conf.replace("listen 3128;",
                            "listen 127.0.0.1:%d;" % self.port)
        self.api_port = free_port()
        self.api_url = "http://127.0.0.1:%d/api/v1" % self.api_port
        conf = conf.replace("listen 3129;",
                            "listen 127.0.0.1:%d;" % self.api_port)
        conf = conf.replace("proxy_pass https://api.avala.ai;",
                            "proxy_pass %s;" % origin_url)
        conf = conf.replace("/etc/nginx/avalafs-tier.js",
                            os.path.join(ROOT, "packaging", "nginx",
                                         "avalafs-tier.js"))
        conf = conf.replace("/var/cache/nginx/avalafs",
                            os.path.join(d, "cache"))
        conf = conf.replace("/var/log/nginx/avalafs-tier.log",
                            os.path.join(d, "access.log"))
        conf = conf.replace("/var/log/nginx/avalafs-api.log",
                            os.path.join(d, "api.log"))
        conf = conf.replace("/var/log/nginx/avalafs-tier.error.log",
                            os.path.join(d, "tier-error.log"))
        if ca:
            conf = conf.replace("/etc/ssl/certs/ca-certificates.crt", ca)
        # the test's own word in the data log: whether a node sent the key
        conf = conf.replace("$body_bytes_sent '\n" + " " * 24 +
                            "'$upstream_cache_status';",
                            "$body_bytes_sent '\n" + " " * 24 +
                            "'$upstream_cache_status key=$http_x_avala_api_key"
                            "';")
        assert "key=$http_x_avala_api_key" in conf
        self.access = os.path.join(d, "access.log")
        self.api_access = os.path.join(d, "api.log")
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join("    %s_temp_path %s/%s;\n" % (k, d, k) for k in
                       ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("%sload_module %s;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/error.log;\nevents {}\n"
                    "http {\n%s    include %s/tier.conf;\n}\n"
                    % (user, JS_MODULE, d, d, temp, d))
        with open(os.path.join(d, "tier.conf"), "w") as f:
            f.write(conf)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.d, "-c", os.path.join(self.d, "nginx.conf"),
             "-e", os.path.join(self.d, "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import socket
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read()
                assert time.time() < deadline
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def wait_log(self, ok, which=None):
        """The log once ok(log) holds: nginx writes a request's line as
        it ends the request, which may come after the client has all."""
        deadline = time.time() + 10
        while not ok(self.log(which)) and time.time() < deadline:
            time.sleep(0.05)
        return self.log(which)

    def log(self, which=None):
        path = which or self.access
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()


@pytest.fixture
def tier_factory(tmpdir_short):
    tiers = []

    def start(fake, **kw):
        t = Tier(os.path.join(tmpdir_short, "tier%d" % len(tiers)),
                 "127.0.0.1:%d" % fake.port, "http://127.0.0.1:%d" % fake.port,
                 **kw)
        tiers.append(t)
        return t

    yield start
    for t in tiers:
        t.stop()


@pytest.fixture
def token_file(tmpdir_short):
    path = os.path.join(tmpdir_short, "tier-token")
    with open(path, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def cars(fake_factory):
    return fake_factory("--dataset", DS + ":items=300,size_known=1,"
                        "min_size=2000,max_size=40000,updated=1")


def assert_no_secret(tier):
    """Neither the API key nor the token in any file of the tier, nor a
    URL's signature in its logs."""
    basic = base64.b64encode(TOKEN.encode())
    for d, _, files in os.walk(tier.d):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            assert KEY.encode() not in data, name
            assert TOKEN.split(":")[1].encode() not in data, name
            if name != "tier.conf":  # where the operator wrote it
                assert basic not in data, name
            if name.endswith(".log") and name != "error.log":
                assert b"sig=" not in data, name


def read_all(m, truth):
    """Read every item's file under files/ with 8 threads: the failures."""
    return read_files(files_of(m, truth), truth)


def through(tier, token_file, *more):
    return ("data_proxy=" + tier.url, "data_proxy_auth=" + token_file) + more


def test_four_mounts_ask_the_origin_once(cars, mount_factory, tier_factory,
                                         token_file):
    truth = cars.truth(DS)["items"]
    tier = tier_factory(cars)
    mounts = [mount_factory(cars, "dataset=" + DS, *through(tier, token_file))
              for _ in range(4)]
    for m in mounts:
        for p in files_of(m, truth).values():
            os.listdir(os.path.dirname(p))
    cars.reset()
    errors = {}

    def run(i, m):
        errors[i] = read_all(m, truth)

    threads = [threading.Thread(target=run, args=(i, m))
               for i, m in enumerate(mounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == {0: [], 1: [], 2: [], 3: []}
    # one origin request per object, for four mounts
    assert cars.counts()["file"] == len(truth), cars.counts()
    # the key never went to the tier, the token never to the origin
    log = tier.wait_log(lambda l: l.count(" key=") >= 4 * len(truth))
    lines = log.splitlines()
    assert len(lines) >= 4 * len(truth)
    assert all(l.endswith(" key=-") for l in lines), lines[:3]
    assert cars.counts()["file_with_key"] == 0
    assert cars.counts()["proxy_auth"] == 0
    # nothing secret in the tier's log or cache keys
    assert "Signature" not in log and "sig=" not in log and KEY not in log
    assert_no_secret(tier)

    # a new listing, new signatures: still the tier's
    cars.expire()
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "ttl=0",
                      *through(tier, token_file))
    assert read_all(m, truth) == []
    assert cars.counts()["file"] == 0, cars.counts()

    # a re-upload: a new version, asked for once, its new bytes everywhere
    t = truth[5]
    cars.reupload(DS, t["uid"])
    new = [x for x in cars.truth(DS)["items"] if x["uid"] == t["uid"]]
    cars.reset()
    for _ in range(2):
        m = mount_factory(cars, "dataset=" + DS, *through(tier, token_file))
        assert read_all(m, new) == []
    assert cars.counts()["file"] == 1, cars.counts()


def test_a_tier_down_hands_reads_to_the_origin(cars, mount_factory,
                                               tier_factory, token_file):
    truth = cars.truth(DS)["items"][:40]
    tier = tier_factory(cars)
    m = mount_factory(cars, "dataset=" + DS, "data_proxy_reset=2s",
                      "data_proxy=%s;DIRECT" % tier.url,
                      "data_proxy_auth=" + token_file, "cache_dir=none")
    assert read_all(m, truth[:10]) == []
    tier.stop()
    start = time.time()
    assert read_all(m, truth[10:30]) == []
    assert time.time() - start < 30
    switches = [l for l in m.log().splitlines() if tier.url in l]
    assert len(switches) == 1, m.log()
    assert_no_secret(tier)
    # back after data_proxy_reset
    tier.start()
    time.sleep(2.5)
    before = tier.log().count("\n")
    assert read_all(m, truth[30:]) == []
    assert tier.wait_log(lambda l: l.count("\n") > before).count("\n") > before


def test_no_direct_listed_is_eio_at_the_deadline(cars, mount_factory,
                                                 tier_factory, token_file):
    truth = cars.truth(DS)["items"][:3]
    tier = tier_factory(cars)
    m = mount_factory(cars, "dataset=" + DS, "timeout=3s", "cache_dir=none",
                      *through(tier, token_file))
    paths = files_of(m, truth)
    for p in paths.values():
        os.listdir(os.path.dirname(p))
    tier.stop()
    start = time.time()
    for p in paths.values():
        with pytest.raises(OSError) as e:
            sha256_file(p)
        assert e.value.errno == 5
    assert time.time() - start < 3 * 3 + 5
    # one line for the tier, none for each read that failed
    assert len([l for l in m.log().splitlines() if tier.url in l]) == 1
    assert "giving up" not in m.log()


def test_a_wrong_token_is_refused_at_start(cars, tmpdir_short, tier_factory,
                                           mount_factory):
    tier = tier_factory(cars)
    bad = os.path.join(tmpdir_short, "bad-token")
    with open(bad, "w") as f:
        f.write("node:wrong\n")
    with pytest.raises(RuntimeError) as e:
        mount_factory(cars, "dataset=" + DS, *through(tier, bad))
    msg = str(e.value)
    assert "refused the token (HTTP 407)" in msg and "wrong" not in msg


def test_bytes_that_do_not_match_are_asked_for_again(cars, mount_factory,
                                                     tier_factory,
                                                     token_file):
    truth = cars.truth(DS)["items"][:1]
    tier = tier_factory(cars)
    # the tier's first answer comes from an origin that names another
    # total: cached by the tier, refused by the mount, asked for again
    # with no-cache, and the tier's entry replaced
    cars.fault(route="file", wrong_total=123456789, count=1)
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=none",
                      *through(tier, token_file))
    assert read_all(m, truth) == []
    assert cars.counts()["file"] == 2
    cars.reset()
    m2 = mount_factory(cars, "dataset=" + DS, "cache_dir=none",
                       *through(tier, token_file))
    assert read_all(m2, truth) == []
    assert cars.counts()["file"] == 0


def test_an_https_origin_through_the_tier(tls_fake_factory, pki,
                                          mount_factory, tmpdir_short,
                                          token_file):
    fake = tls_fake_factory("--dataset", DS + ":items=30,size_known=1,"
                            "min_size=2000,max_size=40000",
                            "--name", "localhost")
    truth = fake.truth(DS)["items"]
    # by name, as origins are: nginx checks the certificate's names, not
    # its addresses (the origin's address stands for a resolver)
    origin = "localhost:%d" % fake.port
    tier = Tier(os.path.join(tmpdir_short, "tier-tls"), origin,
                "https://127.0.0.1:%d" % fake.port, ca=pki.ca)
    try:
        for n in (len(truth), 0):
            fake.reset()
            m = mount_factory(fake, "dataset=" + DS, "ca_file=" + pki.ca,
                              "api_url=https://%s/api/v1" % origin,
                              *through(tier, token_file))
            bad = read_all(m, truth)
            assert bad == [], (m.log()[-3000:], tier.log(),
                               open(tier.d + "/error.log").read()[-3000:])
            # the first mount's reads went to the origin once each, in
            # absolute form through the tier; the second's were the tier's
            assert fake.counts()["file"] == n, fake.counts()
        log = tier.wait_log(lambda l: l.count(" HIT key=") >= len(truth))
        assert log.count(" HIT key=") >= len(truth)
    finally:
        tier.stop()


class StallingTier:
    """A tier that asks the origin, then sends the answer's headers and
    half its body, and nothing more: a tier that stalls mid-body. With
    @stale, a tier whose copy is bad: it names a wrong total unless asked
    with no-cache, and then passes on the origin's answer whole."""

    def __init__(self, stale=False):
        self.stale = stale
        self.asked = []  # each request's Cache-Control, or None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.done = threading.Event()
        self.served = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def serve(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
            target = lines[0].split(" ")[1]
            if target.startswith("/"):  # the start-up check
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                return
            hdrs = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
            self.asked.append(hdrs.get("Cache-Control"))
            fresh = hdrs.get("Cache-Control") == "no-cache"
            req = urllib.request.Request(target,
                                         headers={"Range": hdrs["Range"]})
            with urllib.request.urlopen(req) as r:
                body = r.read()
                out = "HTTP/1.1 %d X\r\n" % r.status
                for k in ("Content-Range", "ETag", "Content-Type"):
                    v = r.headers.get(k)
                    if v and k == "Content-Range" and self.stale and \
                            not fresh:
                        v = v.split("/")[0] + "/99999999"
                    if v:
                        out += "%s: %s\r\n" % (k, v)
            out += "Content-Length: %d\r\n\r\n" % len(body)
            self.served += 1
            if self.stale:
                conn.sendall(out.encode() + body)
                return
            conn.sendall(out.encode() + body[:len(body) // 2])
            self.done.wait(60)

    def stop(self):
        self.done.set()
        self.sock.close()


def test_a_tier_that_stalls_mid_body(cars, mount_factory, token_file):
    truth = cars.truth(DS)["items"][:3]
    tier = StallingTier()
    try:
        m = mount_factory(cars, "dataset=" + DS, "timeout=6s",
                          "cache_dir=none", "data_proxy=%s;DIRECT" % tier.url,
                          "data_proxy_auth=" + token_file)
        paths = files_of(m, truth)
        for p in paths.values():
            os.listdir(os.path.dirname(p))
        cars.reset()
        start = time.time()
        assert read_all(m, truth) == []
        assert time.time() - start < 6, m.log()
        assert tier.served >= 1
        # the origin was asked only for what the tier had not sent
        direct = [r for r in cars.stats()["requests"]
                  if r["route"] == "file" and r["range"] and
                  not r["range"].startswith("bytes=0-")]
        assert direct, cars.stats()["requests"]
        assert len([l for l in m.log().splitlines() if tier.url in l]) == 1
    finally:
        tier.stop()


def test_a_token_changed_while_mounted(cars, mount_factory, tier_factory,
                                       token_file):
    truth = cars.truth(DS)["items"][:20]
    tier = tier_factory(cars)
    m = mount_factory(cars, "dataset=" + DS, *through(tier, token_file))
    assert read_all(m, truth[:10]) == []
    with open(token_file, "w") as f:
        f.write("node:a-token-the-tier-does-not-know\n")
    cars.reset()
    start = time.time()
    bad = read_all(m, truth[10:])
    assert len(bad) == 10 and all(
        isinstance(e, OSError) and e.errno == 5 for _, e in bad), bad
    assert time.time() - start < 10
    assert cars.counts()["file"] == 0
    said = [l for l in m.log().splitlines() if "refused the token" in l]
    assert len(said) == 1, m.log()
    assert "a-token-the-tier" not in m.log()
    # the node's own cache still serves what it read
    assert read_all(m, truth[:10]) == []
    assert cars.counts()["file"] == 0


def test_four_mounts_list_through_the_tier(fake_factory, mount_factory,
                                           tier_factory, token_file):
    fake = fake_factory("--dataset", DS + ":items=3000")
    tier = tier_factory(fake)
    api = "api_url=%s;%s" % (tier.api_url, fake.api_url)
    mounts = [mount_factory(fake, "dataset=" + DS, api, "page_size=100")
              for _ in range(4)]
    fake.reset()
    names = {}

    def ls(i, m):
        names[i] = sorted(os.listdir(m.p("acme", "cars", "items")))

    threads = [threading.Thread(target=ls, args=(i, m))
               for i, m in enumerate(mounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names[0]) == 3000
    assert names[0] == names[1] == names[2] == names[3]
    # about one request of the API per page, for four mounts
    pages = 3000 // 100
    assert pages <= fake.counts()["items_list"] <= pages * 1.1 + 1, \
        fake.counts()
    api_log = tier.wait_log(lambda l: l.count(" HIT\n") >= 2 * pages,
                            tier.api_access)
    assert api_log.count(" HIT\n") >= 2 * pages, api_log
    assert_no_secret(tier)
    # an item asked for again is the API's answer now, not the tier's
    assert fake.counts()["item_get"] == 0


def test_large_files_are_asked_for_once_a_slice(fake_factory, mount_factory,
                                                tier_factory, token_file):
    size = 10 * 1000 * 1000
    fake = fake_factory("--dataset", DS + ":items=2,size_known=1,"
                        "min_size=%d,max_size=%d" % (size, size))
    truth = fake.truth(DS)["items"]
    tier = tier_factory(fake)
    slices = -(-size // (4 << 20))
    for _ in range(2):
        m = mount_factory(fake, "dataset=" + DS, "cache_dir=none",
                          *through(tier, token_file))
        assert read_all(m, truth) == []
    # the tier asked the origin once for each 4 MiB slice, for two mounts
    got = [r["range"] for r in fake.stats()["requests"]
           if r["route"] == "file"]
    assert len(got) == len(truth) * slices, got
    assert all(r.startswith("bytes=") and int(r[6:].split("-")[0]) %
               (4 << 20) == 0 for r in got), got


def test_the_origins_errors_are_never_cached(cars, mount_factory,
                                             tier_factory, token_file):
    truth = cars.truth(DS)["items"][:1]
    tier = tier_factory(cars)
    # an origin's 500 that says it may be cached, and a Proxy-Status of
    # its own on the 200 after it: neither is the tier's
    cars.fault(route="file", status=500, count=1,
               headers={"Cache-Control": "public, max-age=3600",
                        "Expires": "Thu, 01 Dec 2039 16:00:00 GMT"})
    cars.fault(route="file", count=1,
               headers={"Proxy-Status": "some-cdn; error=http_protocol_error"})
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=none",
                      *through(tier, token_file))
    assert read_all(m, truth) == []
    assert cars.counts()["file"] == 2
    assert tier.url not in m.log()
    lines = [l for l in tier.wait_log(lambda l: l.count("/files/") >= 2)
             .splitlines() if "/files/" in l]
    assert [l.split()[-4] for l in lines] == ["500", "206"], lines
    assert " HIT " not in tier.log()


def test_the_tier_serves_only_token_holders_and_listed_origins(
        cars, tier_factory):
    import http.client
    tier = tier_factory(cars)
    url = cars.truth(DS)["items"][0]["files"]["data"].get("url")
    target = "http://127.0.0.1:%d/files/acme/cars/x/data/data.jpg" % cars.port
    basic = "Basic " + base64.b64encode(TOKEN.encode()).decode()
    for host, auth, want in (
            ("127.0.0.1:%d" % cars.port, None, 407),
            ("127.0.0.1:%d" % cars.port, "Basic bm9kZTp3cm9uZw==", 407),
            ("elsewhere.example:80", basic, 403)):
        c = http.client.HTTPConnection("127.0.0.1", tier.port, timeout=10)
        headers = {"Host": host, "X-Avalafs-Version": "2024-01-01T00:00:00Z"}
        if auth:
            headers["Proxy-Authorization"] = auth
        c.request("GET", target, headers=headers)
        r = c.getresponse()
        r.read()
        assert r.status == want, (host, auth, r.status)
        if want == 403:
            assert "destination_not_found" in r.getheader("Proxy-Status")
        c.close()
    assert cars.counts()["file"] == 0


def test_an_item_asked_for_again_is_the_apis_answer(cars, mount_factory,
                                                    tier_factory):
    truth = cars.truth(DS)["items"][:2]
    tier = tier_factory(cars)
    # with slashes at the end, as people write base URLs
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=none",
                      "api_url=%s/;%s/" % (tier.api_url, cars.api_url))
    paths = files_of(m, truth)
    for p in paths.values():
        os.listdir(os.path.dirname(p))
    assert read_all(m, truth[:1]) == []
    # the URLs expire: the item is asked for again, through the tier,
    # with no-cache, and its answer is the API's own
    cars.expire()
    cars.reset()
    assert read_all(m, truth[1:]) == []
    assert cars.counts()["item_get"] >= 1, cars.counts()
    item = "/items/%s/" % truth[1]["uid"]
    gets = [l for l in tier.wait_log(lambda l: item in l, tier.api_access)
            .splitlines() if item in l]
    assert gets and all(l.endswith(" BYPASS") for l in gets), gets


def test_a_tiers_bad_copy_is_asked_for_again_with_no_cache(cars,
                                                           mount_factory,
                                                           token_file):
    truth = cars.truth(DS)["items"][:3]
    tier = StallingTier(stale=True)
    try:
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=none",
                          "data_proxy=" + tier.url,
                          "data_proxy_auth=" + token_file)
        assert read_all(m, truth) == []
        # each object: the tier's copy refused, then asked past it
        assert tier.asked.count(None) == 3, tier.asked
        assert tier.asked.count("no-cache") == 3, tier.asked
    finally:
        tier.stop()
