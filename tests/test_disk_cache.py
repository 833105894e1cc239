# The data cache on disk (DESIGN section 6), through real mounts: what one
# mount fetched, the next one reads without a request; damaged, cut-short
# and stale entries are never served; the cap holds; a full disk, a dead
# server and a second mount sharing the folder are all fine.
import glob
import os
import random
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import KEY, Mount, read_all, sha256_file, unmount

DS = "acme/cars"


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def data_paths(m, truth):
    """Each item's data file, by uid."""
    items = m.p("acme", "cars", "items")
    return {t["uid"]: os.path.join(items, t["key"], "data" +
                                   os.path.splitext(t["key"])[1])
            for t in truth}


def entries(cache_dir):
    """The data cache's entry files."""
    return [p for p in glob.glob(os.path.join(cache_dir, "data", "??", "*"))]


def data_requests(fake):
    return fake.counts()["file"]


@pytest.fixture
def cars(fake_factory):
    return fake_factory("--dataset", DS + ":items=200,size_known=0.5,"
                        "min_size=20000,max_size=160000")


@pytest.mark.drops_caches
def test_second_mount_reads_from_disk(cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"]
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_all(data_paths(m, truth), truth) == []
    first = data_requests(cars)
    # one request a file: those without a listed size too
    assert first == len(truth)
    assert m.stop() == 0
    assert len(entries(cache)) == len(truth)

    drop_caches()
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_all(data_paths(m, truth), truth) == []
    assert data_requests(cars) == 0
    st = m.cache_stats()
    assert st["disk_hits"] == len(truth) and st["fetches"] == 0
    # once in the kernel's page cache, what the disk holds is not held in
    # memory too: about 18 MB read, next to nothing kept
    assert st["cache_used"] <= 1 << 20, st


@pytest.mark.drops_caches
def test_damaged_and_cut_short_entries_are_fetched_again(
        cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"][:20]
    # no file fetched ahead: the entries are those of the files read
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0")
    assert read_all(data_paths(m, truth), truth) == []
    assert m.stop() == 0
    files = sorted(entries(cache))
    assert len(files) == len(truth)
    # a byte flipped in the middle of one entry's bytes, another cut short,
    # a third cut inside its header
    flipped, cut, headless = files[0], files[1], files[2]
    with open(flipped, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size - 1000)
        b = f.read(1)
        f.seek(size - 1000)
        f.write(bytes([b[0] ^ 0x40]))
    os.truncate(cut, os.path.getsize(cut) - 1)
    os.truncate(headless, 20)

    drop_caches()
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0")
    assert read_all(data_paths(m, truth), truth) == []
    assert data_requests(cars) == 3
    st = m.cache_stats()
    assert st["disk_damaged"] == 3
    assert "damaged" in m.log()
    # and they were written again, whole
    assert m.stop() == 0
    drop_caches()
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0")
    assert read_all(data_paths(m, truth), truth) == []
    assert data_requests(cars) == 0


@pytest.mark.drops_caches
def test_kill_during_fetches_leaves_no_partial_entry(fake_factory,
                                                     mount_factory,
                                                     tmpdir_short):
    fake = fake_factory("--dataset", DS + ":items=40,size_known=1,"
                        "min_size=3000000,max_size=7000000")
    cache = os.path.join(tmpdir_short, "cache")
    truth = fake.truth(DS)["items"]
    # not the fixture's: it is killed, not unmounted
    m = Mount(fake, tmpdir_short, ["dataset=" + DS, "cache_dir=" + cache])
    paths = data_paths(m, truth)
    # slow answers: the kill comes while bytes are arriving
    fake.fault(route="file", latency=0.3, count=-1)
    readers = [subprocess.Popen(["cat", p], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for p in list(paths.values())[:16]]
    time.sleep(0.6)
    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait()
    for r in readers:
        r.wait(30)
    unmount(m.path)
    m.stderr.close()
    fake.call("/_fake/fault", method="DELETE")

    drop_caches()
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    assert read_all(data_paths(m, truth), truth) == []
    assert m.cache_stats()["disk_damaged"] == 0


def test_cap_holds_under_parallel_random_readers(fake_factory, mount_factory,
                                                 tmpdir_short):
    # 100 MiB of files under a 20 MiB cap
    fake = fake_factory("--dataset", DS + ":items=100,size_known=1,"
                        "min_size=900000,max_size=1200000")
    cache = os.path.join(tmpdir_short, "cache")
    truth = fake.truth(DS)["items"]
    assert sum(t["files"]["data"]["size"] for t in truth) > 95 << 20
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "disk_cache_size=20M", "cache_size=16M")
    paths = data_paths(m, truth)
    want = {t["uid"]: t["files"]["data"]["sha256"] for t in truth}
    most = [0]
    bad = []
    stop = threading.Event()

    def reader(seed):
        rnd = random.Random(seed)
        for _ in range(25):
            uid = rnd.choice(list(paths))
            if sha256_file(paths[uid]) != want[uid]:
                bad.append(uid)

    def watch():
        while not stop.is_set():
            most[0] = max(most[0], sum(os.path.getsize(p)
                                       for p in entries(cache)
                                       if os.path.exists(p)))
            time.sleep(0.05)

    w = threading.Thread(target=watch)
    w.start()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    w.join()
    assert bad == []
    st = m.cache_stats()
    assert 0 < st["disk_used"] <= 20 << 20
    # the entries' headers are a few hundred bytes each
    assert most[0] <= (20 << 20) + 100 * 1024
    assert st["disk_puts"] > 0


def folder_bytes(path):
    """What a folder takes on disk, as du counts it."""
    return sum(os.lstat(os.path.join(d, n)).st_blocks * 512
               for d, _, names in os.walk(path) for n in names)


def test_the_cap_bounds_the_folder_and_keeps_hitting(fake_factory,
                                                     mount_factory,
                                                     tmpdir_short):
    # 300 files of 60-160 KB (about 32 MiB) under a cap of half of them:
    # the folder, headers, blocks, index and listings included, stays
    # within it, and every shuffled epoch after the first finds a steady
    # share of them there (a little less than half: the listings and the
    # index take their part of the cap)
    fake = fake_factory("--dataset", DS + ":items=300,size_known=1,"
                        "min_size=60000,max_size=160000")
    truth = fake.truth(DS)["items"]
    total = sum(t["files"]["data"]["size"] for t in truth)
    cap = total // 2
    cache = os.path.join(tmpdir_short, "cache")
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "disk_cache_size=%d" % cap, "cache_size=1M",
                      "prefetch=0")
    paths = data_paths(m, truth)
    want = {t["uid"]: t["files"]["data"]["sha256"] for t in truth}
    hits = []
    for epoch in range(4):
        order = list(paths)
        random.Random(epoch).shuffle(order)
        fake.reset()
        for uid in order:
            # past the kernel's page cache: every read reaches avalafs
            fd = os.open(paths[uid], os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            assert sha256_file(paths[uid]) == want[uid]
        m.wait_idle()
        hits.append(1 - fake.counts()["file"] / len(order))
        assert folder_bytes(cache) <= cap, (epoch, folder_bytes(cache), cap)
    assert hits[0] == 0
    assert all(0.35 <= h <= 0.55 for h in hits[1:]), hits
    assert max(hits[1:]) - min(hits[1:]) <= 0.1, hits


def test_full_disk_still_reads(cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "small")
    os.mkdir(cache)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                    cache],
                   check=True)
    try:
        truth = cars.truth(DS)["items"][:60]
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
        assert read_all(data_paths(m, truth), truth) == []
        st = m.cache_stats()
        assert st["disk"] and st["disk_refused"] > 0
        assert st["disk_used"] <= 2 << 20
        assert m.stop() == 0
    finally:
        subprocess.run(["umount", "-l", cache])


@pytest.mark.drops_caches
def test_two_mounts_share_the_cache_while_reading(cars, mount_factory,
                                                  tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"]
    a = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    b = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    results = {}

    def run(name, m, order):
        paths = data_paths(m, truth)
        results[name] = read_all(dict(sorted(paths.items(), reverse=order)),
                                 truth, workers=4)

    ta = threading.Thread(target=run, args=("a", a, False))
    tb = threading.Thread(target=run, args=("b", b, True))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    assert results == {"a": [], "b": []}, a.log() + b.log()
    # what they queued for the disk is written by the time they exit; no
    # entry was written twice over the other's
    assert a.stop() == 0 and b.stop() == 0
    assert len(entries(cache)) == len(truth)
    drop_caches()
    cars.reset()
    c = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_all(data_paths(c, truth), truth) == []
    assert data_requests(cars) == 0


@pytest.mark.drops_caches
def test_random_reads_keep_what_they_fetched(fake_factory, mount_factory,
                                             tmpdir_short):
    size = 24 << 20
    fake = fake_factory("--dataset", DS + ":items=1,size_known=1,"
                        "min_size=%d,max_size=%d" % (size, size))
    cache = os.path.join(tmpdir_short, "cache")
    truth = fake.truth(DS)["items"]
    whole = fake.file_bytes(DS, truth[0]["uid"])
    rnd = random.Random(3)
    offsets = [rnd.randrange(size - (1 << 20)) for _ in range(6)]

    def read_them(m):
        p = list(data_paths(m, truth).values())[0]
        for off in offsets:
            with open(p, "rb", buffering=0) as f:
                # the kernel reads what is read: pages cached by an earlier
                # read nearby would make it read ahead, as much or not
                # depending on timing
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
                assert os.pread(f.fileno(), 1 << 20, off) == \
                    whole[off:off + (1 << 20)]
        m.wait_idle()

    # a block of a large object is kept the second time it is fetched
    for _ in range(2):
        fake.reset()
        m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                          "readahead=0")
        read_them(m)
        fetched = sum(int(b) - int(a) + 1 for a, b in (
            r["range"][len("bytes="):].split("-")
            for r in fake.stats()["requests"] if r["route"] == "file"))
        # what was read, not the rest of its 4 MiB blocks
        assert fetched <= 1.5 * len(offsets) * (1 << 20), fetched
        assert m.stop() == 0
        drop_caches()
    kept = entries(cache)
    assert kept and all(".p" in os.path.basename(e) for e in kept), kept
    assert sum(os.path.getsize(e) for e in kept) <= \
        1.5 * len(offsets) * (1 << 20)
    # the third time, from the disk alone
    fake.reset()
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "readahead=0")
    read_them(m)
    assert fake.counts().get("file", 0) == 0, (
        [r["range"] for r in fake.stats()["requests"]
         if r["route"] == "file"], offsets,
        sorted(os.path.basename(e) for e in entries(cache)))
    assert m.cache_stats()["disk_hits"] >= len(offsets)
    assert m.stop() == 0
    # read whole, twice: each block is kept whole, and its pieces go
    for _ in range(2):
        drop_caches()
        m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
        p = list(data_paths(m, truth).values())[0]
        with open(p, "rb") as f:
            assert f.read() == whole
        m.wait_idle()
        assert m.stop() == 0
    kept = sorted(os.path.basename(e).split(".")[1] for e in entries(cache))
    assert kept == [str(i) for i in range(6)], " ".join(kept)


@pytest.mark.drops_caches
def test_new_etag_replaces_the_entry_and_never_mixes(fake_factory,
                                                     mount_factory,
                                                     tmpdir_short):
    # a large file: its first 4 MiB block is kept, then the object changes
    # on the server (same size, new ETag) while the listing does not
    fake = fake_factory("--dataset", DS + ":items=1,size_known=1,"
                        "min_size=9000000,max_size=9000000")
    cache = os.path.join(tmpdir_short, "cache")
    truth = fake.truth(DS)["items"]
    old = fake.file_bytes(DS, truth[0]["uid"])
    # a large file's block is kept the second time it is fetched
    for _ in range(2):
        m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                          "readahead=1M")
        p = list(data_paths(m, truth).values())[0]
        with open(p, "rb", buffering=0) as f:
            # the kernel reads no further ahead than this
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(f.fileno(), 4 << 20, 0) == old[:4 << 20]
        m.wait_idle()
        assert m.stop() == 0
        drop_caches()
    # the first block, and pieces of the second that readahead brought
    kept = sorted(os.path.basename(e).split(".")[1] for e in entries(cache))
    assert kept[0] == "0", kept
    assert all(k[0] == "p" and 16 <= int(k[1:]) < 32 for k in kept[1:]), kept

    drop_caches()
    fake.fault(route="file", etag_change=True, count=-1)
    # no readahead: nothing past what is read asks the server, which would
    # end this reader's version before it read what the disk holds
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "readahead=0")
    p = list(data_paths(m, truth).values())[0]
    with open(p, "rb") as f:
        head = f.read(1 << 20)  # from the disk: the old version
        assert head == old[:1 << 20]
        with pytest.raises(OSError) as e:
            f.seek(6 << 20)
            f.read(1 << 20)  # fetched: another ETag, never mixed in
        assert e.value.errno == 5
    assert "changed on the server" in m.log()
    # a new open reads the new version whole, and it replaced the old
    new = open(p, "rb").read()
    assert new != old and len(new) == len(old)
    m.wait_idle()
    assert m.stop() == 0
    drop_caches()
    fake.reset()
    fake.fault(route="file", etag_change=True, count=-1)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    p = list(data_paths(m, truth).values())[0]
    assert open(p, "rb").read() == new


@pytest.mark.drops_caches
def test_reupload_is_read_anew(cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"][:5]
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache, "ttl=1")
    paths = data_paths(m, truth)
    assert read_all(paths, truth) == []
    uid = truth[0]["uid"]
    cars.reupload(DS, uid)
    new = cars.file_bytes(DS, uid)
    deadline = time.time() + 20
    while open(paths[uid], "rb").read() != new:
        assert time.time() < deadline, "the new version was never read"
        time.sleep(0.3)
    assert m.stop() == 0
    drop_caches()
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert open(data_paths(m, truth)[uid], "rb").read() == new


@pytest.mark.drops_caches
def test_server_down_warm_cache_serves(cars, mount_factory, tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"][:50]
    # a memory cache too small to hold them: reads come from the disk
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "cache_size=1M", "timeout=3")
    paths = data_paths(m, truth)
    assert read_all(paths, truth) == []
    cars.stop()
    drop_caches()
    before = m.cache_stats()
    assert read_all(paths, truth) == []
    after = m.cache_stats()
    # every byte came from the disk but what memory held at the start
    # (the last files read may still be there, their entries written after)
    total = sum(t["files"]["data"]["size"] for t in truth)
    from_disk = after["disk_read_bytes"] - before["disk_read_bytes"]
    assert from_disk + before["cache_used"] >= total
    assert before["cache_used"] <= 1 << 20
    assert after["disk_hits"] - before["disk_hits"] >= len(truth) // 2


def test_entries_are_private_and_hold_no_key(cars, mount_factory,
                                             tmpdir_short):
    cache = os.path.join(tmpdir_short, "cache")
    truth = cars.truth(DS)["items"][:30]
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_all(data_paths(m, truth), truth) == []
    assert m.stop() == 0
    data = os.path.join(cache, "data")
    seen = 0
    for root, dirs, files in os.walk(data):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700, root
        for name in files:
            path = os.path.join(root, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            with open(path, "rb") as f:
                assert KEY.encode() not in f.read()
            seen += 1
    assert seen >= len(truth)


def test_cache_dir_none_keeps_no_data(cars, mount_factory, tmpdir_short):
    truth = cars.truth(DS)["items"][:10]
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=none")
    assert read_all(data_paths(m, truth), truth) == []
    assert m.cache_stats()["disk"] is False
