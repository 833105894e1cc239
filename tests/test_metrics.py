# Metrics for Prometheus (-o metrics=ADDR): /metrics scraped with curl over
# TCP and a unix socket, accepted by promtool; the counters move as reads
# do (a first read costs the origin its bytes, a cached one the memory or
# the disk); no key, token or signed URL in it; an address in use, or a
# path that is not our socket, refuses the mount in one line.
import errno
import mmap
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import BINARY, KEY

DS = "acme/cars"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture
def cars(fake_factory):
    # sizes listed, so a stat costs no request; files of 3 to 6 blocks
    return fake_factory("--dataset", DS + ":items=6,size_known=1,"
                        "min_size=300000,max_size=700000")


def served_at(m):
    """The address the mount's log says the metrics are at."""
    deadline = time.time() + 10
    while time.time() < deadline:
        found = re.search(r"metrics at (http://\S+/metrics)", m.log())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError("no metrics line: " + m.log())


def curl(*args):
    """curl -s with @args: (exit code, stdout as text)."""
    r = subprocess.run(["curl", "-s", "--max-time", "20"] + list(args),
                       capture_output=True)
    return r.returncode, r.stdout.decode("utf-8")


def scrape(m, path="/metrics"):
    """The text of one scrape of @m over TCP."""
    url = served_at(m)
    rc, text = curl(url[:-len("/metrics")] + path)
    assert rc == 0, rc
    return text


def unescape(v):
    return re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n"
                  else x.group(1), v)


def parse(text):
    """{(name, ((label, value), ...)): value} of every sample, checking
    that each family's HELP and TYPE come before its samples and that its
    samples are together."""
    samples, typed, seen, last = {}, {}, set(), None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in seen, "family %s twice" % name
            seen.add(name)
            last = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name == last and kind in ("counter", "gauge"), line
            typed[name] = kind
        else:
            found = LINE.match(line)
            assert found, "not a sample: %r" % line
            name, labels, value = found.groups()
            assert name == last and name in typed, line
            key = (name, tuple(sorted((k, unescape(v)) for k, v in
                                      LABEL.findall(labels or ""))))
            assert key not in samples, "sample twice: " + line
            samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def data_file(m, truth):
    """The data file of the first item, and its size."""
    t = truth[0]
    folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
    data = [f for f in os.listdir(folder) if f.startswith("data")][0]
    return os.path.join(folder, data), t["files"]["data"]["size"]


def read_direct(path):
    """Read @path whole with O_DIRECT: every byte asked of the mount, none
    from the kernel's page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.fstat(fd).st_size
        buf = mmap.mmap(-1, (size + 4095) // 4096 * 4096 or 4096)
        n = os.readv(fd, [buf])
        assert n == size
        return bytes(buf[:n])
    finally:
        os.close(fd)


def test_scrape_over_tcp_passes_promtool(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "metrics=127.0.0.1:0")
    truth = cars.truth(DS)["items"]
    path, _ = data_file(m, truth)
    with open(path, "rb") as f:
        f.read()
    url = served_at(m)
    r = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", url],
                       capture_output=True, check=True)
    assert re.search(rb"(?i)^content-type: text/plain; version=0\.0\.4",
                     r.stdout, re.M), r.stdout
    text = scrape(m)
    samples = parse(text)
    for name in ("avalafs_api_requests_total", "avalafs_data_requests_total",
                 "avalafs_data_bytes_total",
                 "avalafs_memory_cache_hits_total",
                 "avalafs_memory_cache_evictions_total",
                 "avalafs_memory_cache_used_bytes",
                 "avalafs_memory_cache_budget_bytes",
                 "avalafs_disk_cache_hits_total",
                 "avalafs_disk_cache_used_bytes",
                 "avalafs_disk_cache_limit_bytes",
                 "avalafs_prefetch_issued_total",
                 "avalafs_fuse_operations_total",
                 "avalafs_fuse_errors_total",
                 "avalafs_fuse_requests_in_flight",
                 "avalafs_data_fetches_in_flight",
                 "avalafs_dataset_objects",
                 "avalafs_dataset_listing_age_seconds",
                 "avalafs_dataset_listing_generation",
                 "avalafs_dataset_listing_state",
                 "process_resident_memory_bytes"):
        assert "# TYPE %s " % name in text, name
    assert value(samples, "avalafs_memory_cache_budget_bytes") == 256 << 20
    assert value(samples, "avalafs_fuse_operations_total", op="read") >= 1
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (Debian package prometheus): "
                    "the format was checked here, not by promtool")
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == b"", r.stdout + r.stderr


def test_scrape_over_a_unix_socket(cars, mount_factory, tmpdir_short):
    sock = os.path.join(tmpdir_short, "metrics.sock")
    m = mount_factory(cars, "dataset=" + DS, "metrics=unix:" + sock)
    served_at_unix = "unix socket " + sock
    assert served_at_unix in m.log()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    rc, text = curl("--unix-socket", sock, "http://avalafs/metrics")
    assert rc == 0
    samples = parse(text)
    assert value(samples, "avalafs_datasets") == 1
    rc, text = curl("-o", "/dev/null", "-w", "%{http_code}",
                    "--unix-socket", sock, "http://avalafs/other")
    assert (rc, text) == (0, "404")
    assert m.stop() == 0
    # the socket goes with the mount
    assert not os.path.lexists(sock)


def test_a_first_read_costs_the_origin_and_a_cached_one_does_not(
        cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"]
    # nothing fetched ahead: the bytes are those of the file read
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0", "metrics=127.0.0.1:0")
    path, size = data_file(m, truth)
    before = parse(scrape(m))
    files_before = cars.counts()["file"]
    assert read_direct(path) == cars.file_bytes(DS, truth[0]["uid"])
    m.wait_idle()
    first = parse(scrape(m))
    fetched = cars.counts()["file"] - files_before

    def moved(samples, since, name, **labels):
        return value(samples, name, **labels) - value(since, name, **labels)

    assert fetched >= 1
    assert moved(first, before, "avalafs_data_bytes_total",
                 source="origin") == size
    assert moved(first, before, "avalafs_data_bytes_total",
                 source="disk") == 0
    assert moved(first, before, "avalafs_data_requests_total",
                 kind="data", outcome="ok") == fetched
    assert moved(first, before, "avalafs_memory_cache_misses_total") >= \
        (size + (128 << 10) - 1) // (128 << 10)
    assert value(first, "avalafs_memory_cache_used_bytes") >= size

    # again, past the kernel's page cache: from memory, not the origin
    files_before = cars.counts()["file"]
    assert read_direct(path) == cars.file_bytes(DS, truth[0]["uid"])
    second = parse(scrape(m))
    assert cars.counts()["file"] == files_before
    assert moved(second, first, "avalafs_data_bytes_total",
                 source="origin") == 0
    assert moved(second, first, "avalafs_data_bytes_total",
                 source="memory") == size
    assert moved(second, first, "avalafs_memory_cache_hits_total") >= 1
    assert m.stop() == 0

    # a new mount on the same cache folder: from the disk
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0", "metrics=127.0.0.1:0")
    path, _ = data_file(m, truth)
    files_before = cars.counts()["file"]
    with open(path, "rb") as f:
        assert len(f.read()) == size
    third = parse(scrape(m))
    assert cars.counts()["file"] == files_before
    assert value(third, "avalafs_data_bytes_total", source="origin") == 0
    assert value(third, "avalafs_data_bytes_total", source="disk") == size
    assert value(third, "avalafs_disk_cache_hits_total") >= 1
    assert value(third, "avalafs_data_requests_total", kind="data",
                 outcome="ok") == 0
    # the listing the first mount kept, counted in the store
    listing = dict(dataset=DS, kind="items")
    assert value(third, "avalafs_dataset_objects", **listing) == len(truth)
    assert value(third, "avalafs_dataset_listing_loads_total", **listing) == 0
    assert value(third, "avalafs_dataset_listing_generation", **listing) >= 1


def test_requests_datasets_and_errors_are_counted(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "metrics=127.0.0.1:0")
    truth = cars.truth(DS)["items"]
    os.listdir(m.p("acme", "cars", "items"))
    # no -o xattr: the kernel is told ENOSYS, once
    with pytest.raises(OSError) as e:
        os.getxattr(m.p("acme", "cars"), "user.nope")
    assert e.value.errno in (errno.ENOSYS, errno.EOPNOTSUPP)
    with pytest.raises(FileNotFoundError):
        os.stat(m.p("acme", "cars", "no-such-view"))
    folder = m.p("acme", "cars", "items", truth[0]["key"].replace("/", "%2F"))
    thumb = [f for f in os.listdir(folder) if f.startswith("thumbnail")][0]
    with open(os.path.join(folder, thumb), "rb") as f:
        assert f.read() == cars.file_bytes(DS, truth[0]["uid"], "thumbnail")
    s = parse(scrape(m))
    assert value(s, "avalafs_data_requests_total", kind="thumbnail",
                 outcome="ok") >= 1
    # dataset= is checked at start, then listed
    assert value(s, "avalafs_api_requests_total", kind="check",
                 outcome="ok") == 1
    assert value(s, "avalafs_api_requests_total", kind="list",
                 outcome="ok") >= 1
    assert value(s, "avalafs_api_requests_total", kind="datasets",
                 outcome="ok") == 0
    assert value(s, "avalafs_fuse_errors_total", op="getxattr",
                 errno="ENOSYS") == 1
    assert value(s, "avalafs_fuse_operations_total", op="getxattr") == 1
    # a name that is not there is a negative entry, not an error
    assert not [k for k in s if k[0] == "avalafs_fuse_errors_total"
                and dict(k[1])["op"] == "lookup"]
    listing = dict(dataset=DS, kind="items")
    assert value(s, "avalafs_dataset_objects", **listing) == len(truth)
    assert value(s, "avalafs_dataset_listing_generation", **listing) >= 1
    assert value(s, "avalafs_dataset_listing_state", state="current",
                 **listing) == 1
    assert sum(value(s, "avalafs_dataset_listing_state", state=st,
                     **listing) for st in ("empty", "loading", "current",
                                           "stale", "refreshing",
                                           "failed")) == 1
    assert 0 <= value(s, "avalafs_dataset_listing_age_seconds",
                      **listing) < 60
    assert value(s, "avalafs_dataset_listing_loads_total", **listing) == 1
    assert value(s, "avalafs_fuse_requests_in_flight") == 0


def test_a_listing_refused_shows_its_error(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "ttl=0", "metrics=127.0.0.1:0")
    os.listdir(m.p("acme", "cars", "items"))
    cars.set_key("another-key")
    # ttl=0: each look refreshes; the refusal makes the folder unreadable
    deadline = time.time() + 20
    while True:
        try:
            os.listdir(m.p("acme", "cars", "items"))
        except OSError:
            break
        assert time.time() < deadline, "the new key was never asked for"
        time.sleep(0.1)
    s = parse(scrape(m))
    listing = dict(dataset=DS, kind="items")
    assert value(s, "avalafs_dataset_listing_failures_total", **listing) >= 1
    assert value(s, "avalafs_dataset_listing_last_error", errno="EACCES",
                 **listing) == 1
    assert value(s, "avalafs_api_requests_total", kind="list",
                 outcome="denied") >= 1
    cars.set_key(KEY)


def test_labels_are_escaped(fake_factory, mount_factory):
    name = 'we"i\\rd/c\u00e4rs'
    fake = fake_factory("--dataset", name + ":items=2")
    m = mount_factory(fake, "metrics=127.0.0.1:0")
    owner, slug = name.split("/")
    os.listdir(m.p(owner, slug, "items"))
    text = scrape(m)
    assert '{dataset="we\\"i\\\\rd/c\u00e4rs",kind="items"} 2' in text
    assert value(parse(text), "avalafs_dataset_objects", dataset=name,
                 kind="items") == 2
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"],
                           input=text.encode(), capture_output=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_no_key_token_or_signed_url_in_it(cars, mount_factory):
    # nothing fetched ahead: the requests are those of the files read
    m = mount_factory(cars, "dataset=" + DS, "prefetch=0",
                      "metrics=127.0.0.1:0")
    truth = cars.truth(DS)["items"]
    path, _ = data_file(m, truth)
    with open(path, "rb") as f:
        f.read()
    cars.expire()  # a fresh URL through the API: "get" counted
    path2, _ = data_file(m, truth[1:])
    with open(path2, "rb") as f:
        f.read()
    text = scrape(m)
    s = parse(text)
    # the expired URL was refused, and a fresh one asked of the API
    assert value(s, "avalafs_data_requests_total", kind="data",
                 outcome="denied") == 1
    assert value(s, "avalafs_api_requests_total", kind="get",
                 outcome="ok") == 1
    assert value(s, "avalafs_data_requests_total", kind="data",
                 outcome="ok") == 2
    assert KEY not in text
    assert "sig=" not in text and "expires=" not in text
    assert "://" not in text
    assert "127.0.0.1" not in text


def test_other_paths_and_methods(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "metrics=127.0.0.1:0")
    base = served_at(m)[:-len("/metrics")]
    for path in ("/", "/other", "/metrics/", "/metricsx"):
        rc, code = curl("-o", "/dev/null", "-w", "%{http_code}", base + path)
        assert (rc, code) == (0, "404"), path
    rc, code = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                    base + "/metrics")
    assert (rc, code) == (0, "405")
    rc, head = curl("-I", base + "/metrics")
    assert rc == 0 and head.startswith("HTTP/1.1 200")
    rc, code = curl("-o", "/dev/null", "-w", "%{http_code}",
                    base + "/metrics?name=x")
    assert (rc, code) == (0, "200")


def mount_fails(fake, tmp, option, mkdir=True):
    """Run a mount with @option that must fail: its exit code and the
    lines it said."""
    mnt = os.path.join(tmp, "mnt-fail")
    os.makedirs(mnt, exist_ok=True)
    env = dict(os.environ, AVALA_API_KEY=KEY)
    env.pop("AVALA_BASE_URL", None)
    r = subprocess.run([BINARY, "-f", "-o", "api_url=%s,dataset=%s,%s" % (
        fake.api_url, DS, option), mnt], env=env, capture_output=True,
        timeout=30)
    assert not os.path.ismount(mnt)
    return r.returncode, r.stderr.decode().splitlines()


def test_an_address_in_use_refuses_the_mount(cars, tmpdir_short):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cars.reset()
    try:
        rc, lines = mount_fails(cars, tmpdir_short,
                                "metrics=127.0.0.1:%d" % port)
    finally:
        taken.close()
    assert rc == 1
    assert lines == ["avalafs: metrics=127.0.0.1:%d: the address is in use: "
                     "another process listens there" % port]
    # refused before the API was asked anything
    assert sum(v for k, v in cars.counts().items()
               if k != "connections") == 0


@pytest.mark.parametrize("addr", ["localhost:9100", "127.0.0.1",
                                  "127.0.0.1:65536", "[::1]9100", "unix:"])
def test_an_address_that_is_not_one_is_refused(cars, tmpdir_short, addr):
    rc, lines = mount_fails(cars, tmpdir_short, "metrics=" + addr)
    assert rc == 1
    assert lines == ["avalafs: metrics=%s: expected 127.0.0.1:PORT, "
                     "[::1]:PORT or unix:PATH" % addr]


def test_a_path_that_is_no_socket_of_ours_is_refused(cars, tmpdir_short):
    plain = os.path.join(tmpdir_short, "plain")
    with open(plain, "w") as f:
        f.write("keep me\n")
    rc, lines = mount_fails(cars, tmpdir_short, "metrics=unix:" + plain)
    assert rc == 1 and len(lines) == 1
    assert "exists and is not a socket" in lines[0]
    assert open(plain).read() == "keep me\n"

    # a link is never followed, to a file or to where nothing is yet
    target = os.path.join(tmpdir_short, "target")
    link = os.path.join(tmpdir_short, "link")
    os.symlink(target, link)
    rc, lines = mount_fails(cars, tmpdir_short, "metrics=unix:" + link)
    assert rc == 1 and len(lines) == 1 and "symbolic link" in lines[0]
    assert not os.path.lexists(target)
    assert os.readlink(link) == target

    # a socket someone serves stays theirs
    sock = os.path.join(tmpdir_short, "live.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(sock)
    live.listen()
    try:
        rc, lines = mount_fails(cars, tmpdir_short, "metrics=unix:" + sock)
    finally:
        live.close()
    assert rc == 1 and len(lines) == 1 and "in use" in lines[0]
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)


def test_a_stale_socket_is_taken_over(cars, mount_factory, tmpdir_short):
    sock = os.path.join(tmpdir_short, "stale.sock")
    # what a mount killed with -9 leaves: a socket no one listens on
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock)
    dead.close()
    m = mount_factory(cars, "dataset=" + DS, "metrics=unix:" + sock)
    rc, text = curl("--unix-socket", sock, "http://avalafs/metrics")
    assert rc == 0 and "avalafs_datasets 1" in text
    assert m.stop() == 0
    assert not os.path.lexists(sock)


def test_unmount_answers_what_it_was_asked(cars, mount_factory):
    """Scrapes while the mount ends: each gets the whole text or no
    connection, never half an answer, and the mount ends cleanly."""
    m = mount_factory(cars, "dataset=" + DS, "metrics=127.0.0.1:0")
    url = served_at(m)
    stop = threading.Event()
    results = []

    def scraper():
        while not stop.is_set():
            r = subprocess.run(["curl", "-s", "--max-time", "10", "-o", "-",
                                "-w", "\n%{http_code}", url],
                               capture_output=True)
            results.append((r.returncode, r.stdout))

    threads = [threading.Thread(target=scraper) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    rc = m.stop()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert rc == 0, m.log()
    # 0: answered; 7: refused, once it stopped; 52, 56: taken by the
    # kernel as the server stopped, before it read them (never 18: cut)
    assert {code for code, _ in results} <= {0, 7, 52, 56}, \
        sorted({code for code, _ in results})
    whole = [out for code, out in results if code == 0]
    assert whole, results[:3]
    for out in whole:
        assert out.endswith(b"\n200"), out[-200:]
        assert b"process_start_time_seconds" in out
    # after: no one listens
    for code, out in results[-4:]:
        assert code == 7, (code, out[-200:])
