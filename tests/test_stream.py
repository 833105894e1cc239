# Data reads (issue 3): one fetch for concurrent readers, a cache budget that
# holds, readahead that grows and resets, goes out in parts at once and
# keeps every byte right, and connections reused.
import errno
import hashlib
import os
import random
import threading
import time

import pytest

from conftest import sha256_file

MIB = 1 << 20
BLOCK = 128 * 1024


def file_requests(fake, uid):
    """Ranges asked of the fake for item @uid's data, oldest first."""
    out = []
    for r in fake.stats()["requests"]:
        if r["route"] == "file" and "/%s/data/" % uid in r["path"]:
            a, b = r["range"].split("=")[1].split("-")
            out.append((int(a), int(b)))
    return out


def data_path(m, ds, t):
    return m.p(*ds.split("/"), "items", t["key"],
               "data" + os.path.splitext(t["key"])[1])


def big_dataset(fake_factory, items=2, size=24 * MIB):
    return fake_factory("--dataset", "acme/big:items=%d,min_size=%d,"
                        "max_size=%d,size_known=1" % (items, size, size))


def test_two_readers_of_one_block_fetch_it_once(fake_factory, mount_factory):
    fake = big_dataset(fake_factory)
    m = mount_factory(fake, "dataset=acme/big")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    expect = fake.file_bytes("acme/big", t["uid"])
    off = 10 * MIB + 5000
    fake.reset()
    fake.fault(route="file", latency=0.5, count=1)
    got = [None] * 4
    barrier = threading.Barrier(4)

    def reader(i):
        with open(path, "rb", buffering=0) as f:
            barrier.wait()
            got[i] = os.pread(f.fileno(), 4096, off)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(g == expect[off:off + 4096] for g in got)
    covering = [r for r in file_requests(fake, t["uid"])
                if r[0] <= off <= r[1]]
    assert len(covering) == 1, file_requests(fake, t["uid"])


def test_cache_budget_holds_under_parallel_random_reads(fake_factory,
                                                         mount_factory):
    fake = big_dataset(fake_factory, items=4, size=12 * MIB)
    m = mount_factory(fake, "dataset=acme/big", "cache_size=4M")
    truth = fake.truth("acme/big")["items"]
    blobs = {t["uid"]: fake.file_bytes("acme/big", t["uid"])
             for t in truth}
    errors = []

    def reader(seed):
        rng = random.Random(seed)
        try:
            for _ in range(40):
                t = rng.choice(truth)
                size = rng.choice([4096, 65536, 300000, MIB])
                off = rng.randrange(0, 12 * MIB)
                with open(data_path(m, "acme/big", t), "rb",
                          buffering=0) as f:
                    data = os.pread(f.fileno(), size, off)
                if data != blobs[t["uid"]][off:off + size]:
                    errors.append((t["uid"], off, size))
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    st = m.cache_stats()
    assert st["cache_budget"] == 4 * MIB
    assert 0 < st["cache_peak"] <= st["cache_budget"], st
    assert st["cache_used"] <= st["cache_budget"]


def test_readahead_grows_then_resets_on_seek(fake_factory, mount_factory):
    fake = big_dataset(fake_factory, items=1, size=40 * MIB)
    m = mount_factory(fake, "dataset=acme/big", "readahead=8M")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    fake.reset()
    with open(path, "rb", buffering=0) as f:
        for off in range(0, 24 * MIB, BLOCK):
            assert len(os.pread(f.fileno(), BLOCK, off)) == BLOCK
    m.wait_idle()  # the last window may still be on its way
    seq = sorted(file_requests(fake, t["uid"]))
    sizes = [b - a + 1 for a, b in seq]
    # windows start at the kernel's first read (its own first window, four
    # times a small read), grow, and stop at readahead=8M
    assert seq[0][0] == 0 and sizes[0] <= 4 * BLOCK, seq
    assert max(sizes) >= 4 * sizes[0], seq
    assert max(sizes) <= 8 * MIB
    # every byte asked once
    covered = sorted(seq)
    for (a1, b1), (a2, b2) in zip(covered, covered[1:]):
        assert a2 > b1, covered
    # random reads of a fresh open: exact ranges, no readahead
    fake.reset()
    with open(path, "rb", buffering=0) as f:
        # jumps farther than the kernel's reads of one reader stray from
        # one another (twice its readahead, 8 MiB): never sequential
        for off in (30, 2, 20, 36, 10, 28, 18):
            os.pread(f.fileno(), 4096, off * MIB + 4096)
    for a, b in file_requests(fake, t["uid"]):
        assert b - a + 1 <= 2 * BLOCK, (a, b)
    assert sha256_file(path) == t["files"]["data"]["sha256"]


def test_reads_the_kernel_sends_out_of_order_are_sequential(
        fake_factory, mount_factory):
    fake = big_dataset(fake_factory, items=1, size=40 * MIB)
    m = mount_factory(fake, "dataset=acme/big", "cache_dir=none")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    whole = fake.file_bytes("acme/big", t["uid"])
    fake.reset()
    # 1 MiB at a time, each pair swapped: 1, 0, 3, 2, ... as the kernel's
    # reads ahead of one reader arrive (without its own readahead: the
    # reads are ours as they are)
    order = [i ^ 1 for i in range(32)]
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        for i in order:
            assert os.pread(f.fileno(), MIB, i * MIB) == \
                whole[i * MIB:(i + 1) * MIB]
    m.wait_idle()
    sizes = [b - a + 1 for a, b in file_requests(fake, t["uid"])]
    # the window grew to whole parts (a reader that seems to jump at each
    # read never reads ahead: 32 requests of 1 MiB)
    assert max(sizes) >= 4 * MIB, sizes
    assert len(sizes) <= 24, sizes


def test_connections_are_reused(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/many:items=200,size_known=1")
    m = mount_factory(fake, "dataset=acme/many", "max_conns=4")
    truth = fake.truth("acme/many")["items"]
    fake.reset()
    for t in truth:
        assert sha256_file(data_path(m, "acme/many", t)) == \
            t["files"]["data"]["sha256"]
    counts = fake.counts()
    assert counts["file"] >= 200
    assert counts["connections"] <= 4, counts


def test_small_file_is_fetched_whole_once(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/mid:items=2,min_size=3000000,"
                        "max_size=3000000,size_known=1")
    m = mount_factory(fake, "dataset=acme/mid")
    t = fake.truth("acme/mid")["items"][0]
    fake.reset()
    path = data_path(m, "acme/mid", t)
    with open(path, "rb", buffering=0) as f:
        # no kernel readahead: the kernel gets the end of one block only
        # (999424 up to 1 MiB), so the block must stay for the rest of it
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        assert len(os.pread(f.fileno(), 49152, 999424)) == 49152
    assert file_requests(fake, t["uid"]) == [(0, 2999999)]
    assert sha256_file(path) == t["files"]["data"]["sha256"]
    assert len(file_requests(fake, t["uid"])) == 1


def test_a_block_the_kernel_holds_is_marked_in_any_read_order(
        fake_factory, mount_factory):
    # once the kernel's page cache holds every page of a block, in whatever
    # order the reads came, the block is the first to go when room is needed
    # (but stays until then)
    fake = fake_factory("--dataset", "acme/mid:items=1,min_size=3000000,"
                        "max_size=3000000,size_known=1")
    m = mount_factory(fake, "dataset=acme/mid")
    t = fake.truth("acme/mid")["items"][0]
    want = fake.file_bytes("acme/mid", t["uid"])
    with open(data_path(m, "acme/mid", t), "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        assert os.pread(f.fileno(), 4096, 0) == want[:4096]
        m.wait_idle()
        st = m.cache_stats()
        used, held = st["cache_used"], st["kernel_held"]
        assert used >= 2 * BLOCK
        half = BLOCK // 2
        # block 1, its second half first: the kernel lacks its first
        assert os.pread(f.fileno(), half, BLOCK + half) == \
            want[BLOCK + half:2 * BLOCK]
        assert m.cache_stats()["kernel_held"] == held
        assert os.pread(f.fileno(), half, BLOCK) == want[BLOCK:BLOCK + half]
        st = m.cache_stats()
        assert st["kernel_held"] == held + BLOCK
        assert st["cache_used"] == used


def test_blocks_the_kernel_holds_are_evicted_first(fake_factory,
                                                    mount_factory):
    """A full cache makes room from the blocks the kernel has too, and keeps
    those only this cache holds (an O_DIRECT reader's)."""
    size = 4 * BLOCK
    fake = fake_factory("--dataset", "acme/ev:items=3,min_size=%d,"
                        "max_size=%d,size_known=1" % (size, size))
    m = mount_factory(fake, "dataset=acme/ev", "cache_size=1M")
    held, direct, third = fake.truth("acme/ev")["items"]

    def read(t, flags=0):
        fd = os.open(data_path(m, "acme/ev", t), os.O_RDONLY | flags)
        try:
            got = b""
            while len(got) < size:
                chunk = os.pread(fd, BLOCK, len(got))
                assert chunk
                got += chunk
            return got
        finally:
            os.close(fd)

    def requests(t):
        return [r for r in fake.stats()["requests"]
                if r["route"] == "file" and t["uid"] in r["path"]]

    assert read(held) == fake.file_bytes("acme/ev", held["uid"])
    m.wait_idle()
    assert m.cache_stats()["kernel_held"] == size
    assert read(direct, os.O_DIRECT) == fake.file_bytes("acme/ev",
                                                         direct["uid"])
    assert read(third, os.O_DIRECT) == fake.file_bytes("acme/ev",
                                                        third["uid"])
    m.wait_idle()
    st = m.cache_stats()
    assert st["kernel_held"] == 0 and st["cache_used"] <= 1 << 20, st
    fake.reset()
    assert read(direct, os.O_DIRECT) == fake.file_bytes("acme/ev",
                                                         direct["uid"])
    assert requests(direct) == []


def test_a_tight_budget_never_fails_a_read(fake_factory, mount_factory):
    """16 readers of random ranges, with O_DIRECT so every read reaches the
    cache, through a budget of 8 blocks: each gets the right bytes and no
    read fails because another reader's claim evicted a block it found."""
    size = 2 * MIB
    fake = fake_factory("--dataset", "acme/tight:items=8,min_size=%d,"
                        "max_size=%d,size_known=1" % (size, size))
    m = mount_factory(fake, "dataset=acme/tight", "cache_size=1M",
                      "readahead=0")
    items = fake.truth("acme/tight")["items"]
    truth = {t["uid"]: fake.file_bytes("acme/tight", t["uid"])
             for t in items}
    failures = []

    def reader(seed):
        rng = random.Random(seed)
        for _ in range(40):
            t = rng.choice(items)
            off = rng.randrange(0, size // 4096) * 4096
            n = min(rng.choice([4096, BLOCK, 2 * BLOCK]), size - off)
            try:
                fd = os.open(data_path(m, "acme/tight", t),
                             os.O_RDONLY | os.O_DIRECT)
                try:
                    got = os.pread(fd, n, off)
                finally:
                    os.close(fd)
            except OSError as e:
                failures.append((t["uid"], off, n, e.errno))
                continue
            if got != truth[t["uid"]][off:off + n]:
                failures.append((t["uid"], off, n, "wrong bytes"))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == [], failures[:5]
    m.wait_idle()
    assert m.cache_stats()["cache_used"] <= 1 << 20


def test_one_reader_fans_out_and_gets_every_byte_right(fake_factory,
                                                       mount_factory):
    fake = big_dataset(fake_factory, items=1, size=40 * MIB)
    m = mount_factory(fake, "dataset=acme/big", "cache_dir=none")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    fake.reset()
    # two answers fail, then every part waits 100 ms before it comes, so
    # that those on their way at once are counted (and come out of order)
    fake.fault(route="file", status=500, count=2)
    fake.fault(route="file", latency=0.1, count=-1)
    with open(path, "rb") as f:
        whole = f.read()
    assert hashlib.sha256(whole).hexdigest() == t["files"]["data"]["sha256"]
    # the window went out in parts, at once
    assert fake.stats()["peaks"]["file"] >= 4, fake.stats()["peaks"]
    sizes = [b - a + 1 for a, b in file_requests(fake, t["uid"])]
    assert max(sizes) <= 4 * MIB


def test_a_seek_in_the_middle_of_a_fan_out(fake_factory, mount_factory):
    fake = big_dataset(fake_factory, items=1, size=40 * MIB)
    m = mount_factory(fake, "dataset=acme/big", "cache_dir=none")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    fake.fault(route="file", latency=0.05, count=-1)
    with open(path, "rb", buffering=0) as f:
        head = f.read(6 * MIB)  # parts are on their way
        f.seek(31 * MIB + 12345)
        tail = f.read(4 * MIB)
    fake.reset()  # the faults cleared
    with open(path, "rb") as f:
        whole = f.read()
    assert hashlib.sha256(whole).hexdigest() == t["files"]["data"]["sha256"]
    assert head == whole[:6 * MIB]
    assert tail == whole[31 * MIB + 12345:35 * MIB + 12345]


def test_a_file_shorter_than_its_listing_fails_and_never_mixes(
        fake_factory, mount_factory):
    size = 40 * MIB
    fake = big_dataset(fake_factory, items=1, size=size)
    m = mount_factory(fake, "dataset=acme/big", "cache_dir=none",
                      "timeout=2")
    t = fake.truth("acme/big")["items"][0]
    path = data_path(m, "acme/big", t)
    whole = fake.file_bytes("acme/big", t["uid"])
    # every answer says the object ends 3 MiB before the listing's size:
    # parts on their way at once, each a bad answer, retried, then EIO
    fake.fault(route="file", wrong_total=size - 3 * MIB, count=-1)
    got = bytearray()
    with open(path, "rb", buffering=0) as f:
        with pytest.raises(OSError) as e:
            while True:
                piece = f.read(MIB)
                if not piece:
                    break
                got += piece
    assert e.value.errno == errno.EIO
    assert bytes(got) == whole[:len(got)]  # what came before, right
    assert os.stat(path).st_size == size  # the size is not learned from it
    fake.call("/_fake/fault", method="DELETE")
    time.sleep(1.1)  # a file that just failed fails at once for a second
    assert sha256_file(path) == t["files"]["data"]["sha256"]
    assert m.alive()
