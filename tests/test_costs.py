# A read costs what the reader asked for (DESIGN section 5), and the mount
# shows what was named: one file's lookup and read fetch that file, random
# readers cause no request ahead, prefetch=0 none of any kind, a walk in
# listing order is still probed ahead, bytes a reader waits on are not
# evicted under a small cache, a stat costs at most 256 KiB, a random read
# fetches about what it reads, and dataset= limits the mount to the
# datasets named, with no dataset-list request.
import hashlib
import os
import random
import subprocess
import threading
import time

import pytest

from conftest import sha256_file

DS = "acme/cars"


def data_requests(fake):
    return fake.counts()["file"]


@pytest.fixture
def unsized(fake_factory):
    # no size in the listing, as the real API: a stat must ask for it
    return fake_factory("--dataset", DS + ":items=400,size_known=0,"
                        "min_size=2000,max_size=20000,classes=4")


def files_of(m, truth):
    """Each item's file under files/, by uid."""
    root = m.p("acme", "cars", "files")
    out = {}
    for t in truth:
        key = t["key"]
        if not os.path.splitext(key)[1]:
            key += ".jpg"
        out[t["uid"]] = os.path.join(root, key)
    return out


def test_one_cat_costs_one_file(unsized, mount_factory):
    truth = unsized.truth(DS)["items"]
    m = mount_factory(unsized, "dataset=" + DS)
    os.listdir(m.p("acme", "cars", "items"))
    t = truth[len(truth) // 2]
    path = files_of(m, [t])[t["uid"]]
    os.listdir(os.path.dirname(path))
    unsized.reset()
    assert sha256_file(path) == t["files"]["data"]["sha256"]
    m.wait_idle()
    assert data_requests(unsized) <= 2, unsized.counts()


@pytest.mark.parametrize("prefetch", ["0", "32"])
def test_random_files_cost_only_themselves(unsized, mount_factory,
                                           prefetch):
    truth = unsized.truth(DS)["items"]
    m = mount_factory(unsized, "dataset=" + DS, "prefetch=" + prefetch)
    picked = random.Random(7).sample(truth, 10)
    paths = files_of(m, picked)
    for p in paths.values():
        os.listdir(os.path.dirname(p))
    unsized.reset()
    for t in picked:
        path = paths[t["uid"]]
        os.stat(path)
        assert sha256_file(path) == t["files"]["data"]["sha256"]
    m.wait_idle()
    # each file: its size probe (the whole of a small file) and no more
    assert data_requests(unsized) <= 20, unsized.counts()


def test_a_walk_in_order_is_probed_ahead(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=120,size_known=0,"
                        "min_size=2000,max_size=20000")
    m = mount_factory(fake, "dataset=" + DS)
    files = m.p("acme", "cars", "files")
    os.listdir(files)  # the listing, before the clock starts
    fake.fault(route="file", latency=0.05, count=-1)
    start = time.time()
    out = subprocess.run(["ls", "-lR", files], capture_output=True,
                         check=True)
    took = time.time() - start
    sizes = [l for l in out.stdout.split(b"\n") if l.startswith(b"-")]
    assert len(sizes) == 120
    # one at a time would take 120 x 50 ms
    assert took < 0.5 * 120 * 0.05, took
    m.wait_idle()
    assert data_requests(fake) <= 130


def ranges(fake):
    """(start, length) of each data request the fake saw."""
    out = []
    for r in fake.stats()["requests"]:
        if r["route"] == "file":
            a, b = r["range"][len("bytes="):].split("-")
            out.append((int(a), int(b) - int(a) + 1))
    return out


def test_a_stat_is_not_a_download(fake_factory, mount_factory):
    size = 2 * 1000 * 1000
    fake = fake_factory("--dataset", DS + ":items=30,size_known=0,"
                        "min_size=%d,max_size=%d" % (size, size))
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=none")
    items = m.p("acme", "cars", "items")
    names = sorted(os.listdir(items))
    fake.reset()
    data = [os.path.join(items, n, [f for f in os.listdir(
        os.path.join(items, n)) if f.startswith("data")][0]) for n in names]
    fake.reset()
    out = subprocess.run(["ls", "-lL"] + data, capture_output=True,
                         check=True, text=True)
    m.wait_idle()
    # every size right, at most 256 KiB asked for each
    got = [int(l.split()[4]) for l in out.stdout.splitlines()]
    assert got == [size] * 30
    asked = ranges(fake)
    assert 30 <= len(asked) <= 30 + 2 * 8, asked
    assert all(a == 0 and n <= 256 << 10 for a, n in asked), asked
    assert sum(n for _, n in asked) <= 30 * (256 << 10)
    # a read then asks for the rest alone, and every byte is right
    fake.reset()
    path = data[0]
    t = [x for x in truth if x["key"].replace("/", "%2F") == names[0]]
    assert len(t) == 1
    assert sha256_file(path) == t[0]["files"]["data"]["sha256"]
    assert all(a >= 256 << 10 for a, _ in ranges(fake)), ranges(fake)


def test_prefetch_0_asks_for_nothing_ahead(unsized, mount_factory):
    m = mount_factory(unsized, "dataset=" + DS, "prefetch=0")
    files = m.p("acme", "cars", "files")
    os.listdir(files)
    unsized.reset()
    out = subprocess.run(["ls", "-lR", files], capture_output=True,
                         check=True)
    m.wait_idle()
    # ls -l stats every file: one probe each, none ahead of it
    n = out.stdout.count(b"\n-")
    assert data_requests(unsized) <= n, (n, unsized.counts())
    st = m.cache_stats()
    assert st["prefetched"] == 0


def test_a_small_cache_does_not_refetch_what_readers_wait_on(
        fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=100,size_known=0,"
                        "min_size=100000,max_size=100000")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "cache_size=1M",
                      "max_conns=2", "cache_dir=none")
    paths = list(files_of(m, truth).values())
    for p in paths:
        os.listdir(os.path.dirname(p))
    fake.reset()
    want = {p: t["files"]["data"]["sha256"] for p, t in zip(paths, truth)}
    bad, todo, lock = [], list(paths), threading.Lock()

    def work():
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop()
            if sha256_file(p) != want[p]:
                bad.append(p)

    start = time.time()
    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    m.wait_idle()
    assert data_requests(fake) <= 110, (fake.counts(), time.time() - start)


def test_dataset_limits_the_mount(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=5",
                        "--dataset", "acme/bikes:items=5",
                        "--dataset", "other/boats:items=5")
    m = mount_factory(fake, "dataset=" + DS)
    assert os.listdir(m.path) == ["acme"]
    assert os.listdir(m.p("acme")) == ["cars"]
    for name in ("bikes", "../other"):
        assert not os.path.exists(m.p("acme", name))
    assert not os.path.exists(m.p("other"))
    assert len(os.listdir(m.p("acme", "cars", "items"))) == 5
    assert fake.counts()["datasets_list"] == 0
    # without dataset=, every dataset the key can list
    m2 = mount_factory(fake)
    assert sorted(os.listdir(m2.path)) == ["acme", "other"]
    assert sorted(os.listdir(m2.p("acme"))) == ["bikes", "cars"]


READS = 16


def read_random(path, size, reopen):
    """READS reads of 1 MiB at random offsets of @path, in one open or in an
    open each (the kernel's readahead keeps no history across opens)."""
    rnd = random.Random(7)
    got = {}
    f = open(path, "rb")
    try:
        for _ in range(READS):
            off = rnd.randrange(0, size - (1 << 20))
            if reopen:
                f.close()
                f = open(path, "rb", buffering=0)
            f.seek(off)
            got[off] = f.read(1 << 20)
    finally:
        f.close()
    return got


@pytest.mark.parametrize("reopen", [False, True],
                         ids=["one_open", "an_open_each"])
def test_random_reads_fetch_what_they_read(fake_factory, mount_factory,
                                           reopen):
    size = 160 << 20
    fake = fake_factory("--dataset", DS + ":items=1,size_known=1,"
                        "min_size=%d,max_size=%d" % (size, size))
    truth = fake.truth(DS)["items"][0]
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=none")
    items = m.p("acme", "cars", "items")
    d = os.path.join(items, os.listdir(items)[0])
    path = os.path.join(d, [f for f in os.listdir(d)
                            if f.startswith("data")][0])
    # reads of up to 4 MiB at random offsets are asked for as they are
    assert m.kernel_readahead_kb(4096) == 4096
    fake.reset()
    got = read_random(path, size, reopen)
    m.wait_idle()
    fetched = sum(n for _, n in ranges(fake))
    assert fetched <= 1.5 * READS * (1 << 20), fetched / (READS << 20)
    # every byte right
    whole = fake.file_bytes(DS, truth["uid"])
    assert hashlib.sha256(whole).hexdigest() == \
        truth["files"]["data"]["sha256"]
    for off, piece in got.items():
        assert piece == whole[off:off + (1 << 20)]
