# Listings kept on disk (DESIGN section 6, "Listings"): a remount answers at
# once, a stale listing is served while the next is fetched, a first one
# streams, the kernel is told what a refresh changed, nodes are freed, and
# nothing a crash or a damaged file leaves behind is ever served wrong.
import errno
import glob
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import KEY, Mount, unmount


def list_responses(fake):
    """Item list requests answered so far (the log records answers)."""
    return [r for r in fake.stats()["requests"] if r["route"] == "items_list"]


def wait_for(condition, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "no " + what
        time.sleep(0.05)


def names(m, *path):
    return sorted(os.listdir(m.p(*path)))


@pytest.mark.slow
def test_a_remount_answers_from_the_store_then_refreshes(fake_factory,
                                                        mount_factory,
                                                        tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=250")
    cache = os.path.join(tmpdir_short, "cache")
    first = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache,
                          "ttl=1")
    want = names(first, "acme", "cars", "items")
    assert len(want) == 250
    first.stop()
    time.sleep(1.2)  # the listing on disk is past its ttl
    m = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache,
                      "ttl=1")
    # (mounting checks the key and the dataset with one small request)
    fake.reset()
    fake.fault(route="items_list", latency=1.0, count=-1)
    start = time.monotonic()
    assert names(m, "acme", "cars", "items") == want
    assert time.monotonic() - start < 0.5
    assert list_responses(fake) == []  # answered before any listing
    # then the listing is fetched again, in the background, once
    wait_for(lambda: len(list_responses(fake)) == 3, what="refresh")
    time.sleep(0.5)
    assert len(list_responses(fake)) == 3


def test_a_fresh_listing_on_disk_makes_no_request(fake_factory, mount_factory,
                                                 tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=20")
    cache = os.path.join(tmpdir_short, "cache")
    first = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    want = names(first, "acme", "cars", "files")
    first.stop()
    m = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    fake.reset()
    assert names(m, "acme", "cars", "files") == want
    os.stat(m.p("acme", "cars", "files", want[0]))
    assert fake.counts()["items_list"] == 0


def test_a_reader_after_ttl_does_not_wait_for_the_refresh(fake_factory,
                                                         mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=30")
    m = mount_factory(fake, "dataset=acme/cars", "ttl=1", "page_size=10")
    items = m.p("acme", "cars", "items")
    assert len(os.listdir(items)) == 30
    fake.fault(route="items_list", latency=1.0, count=-1)
    time.sleep(1.2)
    for _ in range(3):
        start = time.monotonic()
        assert len(os.listdir(items)) == 30
        assert time.monotonic() - start < 0.2
    fake.call("/_fake/fault", method="DELETE")


@pytest.mark.slow
def test_a_refresh_is_seen_everywhere_the_kernel_looked(fake_factory,
                                                       mount_factory):
    """Deleted, added and re-statused items after a refresh, through names
    the kernel had looked up (and cached for ttl)."""
    fake = fake_factory("--dataset", "acme/cars:items=12")
    m = mount_factory(fake, "dataset=acme/cars", "ttl=3")
    truth = fake.truth("acme/cars")["items"]
    gone, kept = truth[0], truth[1]
    status = kept["object"]["status"]
    files = m.p("acme", "cars", "files")
    by_old = m.p("acme", "cars", "by-status", status, kept["key"])
    assert os.path.exists(os.path.join(files, gone["key"]))
    assert os.path.exists(by_old)
    # a name the kernel learns is absent, and caches so
    assert not os.path.exists(m.p("acme", "cars", "items", "nothing.jpg"))
    fake.delete("acme/cars", gone["uid"])
    fake.reset()
    time.sleep(3.1)
    # stale: served, and a refresh starts; the kernel caches these again
    assert os.path.exists(os.path.join(files, gone["key"]))
    assert os.path.exists(by_old)
    wait_for(lambda: len(list_responses(fake)) >= 1, what="refresh")
    time.sleep(0.5)  # the changes reach the kernel
    # within the entry timeout the kernel was given: it was told
    assert not os.path.exists(os.path.join(files, gone["key"]))
    assert not os.path.exists(m.p("acme", "cars", "items", gone["key"]))
    assert gone["key"] not in os.listdir(files)
    assert os.path.exists(os.path.join(files, kept["key"]))


@pytest.mark.slow
def test_a_first_listing_streams(fake_factory, mount_factory):
    """The entries of the first pages reach os.scandir before the last
    page is served; a lookup of a later name waits for it."""
    fake = fake_factory("--dataset", "acme/big:items=20000")
    m = mount_factory(fake, "dataset=acme/big", "page_size=1000")
    fake.reset()
    fake.fault(route="items_list", latency=0.25, count=-1)
    items = m.p("acme", "big", "items")
    start = time.monotonic()
    seen, first_at, served_then = [], None, None
    with os.scandir(items) as it:
        for entry in it:
            if first_at is None:
                first_at = time.monotonic() - start
                served_then = len(list_responses(fake))
            seen.append(entry.name)
    assert len(seen) == 20000 == len(set(seen))
    assert served_then < 20, served_then
    assert first_at < 2.0, first_at
    fake.call("/_fake/fault", method="DELETE")


def test_a_lookup_waits_for_the_page_that_has_it(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/big:items=3000")
    m = mount_factory(fake, "dataset=acme/big", "page_size=500")
    fake.reset()
    fake.fault(route="items_list", latency=0.3, count=-1)
    items = m.p("acme", "big", "items")
    # on the last of 6 pages
    assert os.path.isdir(os.path.join(items, "frame_002999.jpg")) or \
        os.path.isdir(os.path.join(items, "frame_002999.png"))
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(items, "frame_999999.jpg"))
    assert len(list_responses(fake)) == 6
    fake.call("/_fake/fault", method="DELETE")


@pytest.mark.skipif(os.geteuid() != 0, reason="drop_caches needs root")
@pytest.mark.drops_caches
def test_nodes_are_freed_when_the_kernel_forgets_them(fake_factory,
                                                      mount_factory):
    fake = fake_factory("--dataset", "acme/many:items=3000")
    m = mount_factory(fake, "dataset=acme/many", "page_size=1000")
    subprocess.run(["find", m.p("acme", "many", "items"), "-maxdepth", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    held = m.cache_stats()["nodes"]
    assert held >= 3000
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    wait_for(lambda: m.cache_stats()["nodes"] < 100, what="forgets")


@pytest.mark.skipif(os.geteuid() != 0, reason="drop_caches needs root")
@pytest.mark.drops_caches
def test_a_listing_carries_attributes_when_its_reader_wants_them(
        fake_factory, mount_factory):
    # an entry with attributes costs the kernel an inode: a reader that
    # only names (ls | wc -l) gets them for the first 4,096 entries alone
    fake = fake_factory("--dataset", "acme/many:items=6000")
    m = mount_factory(fake, "dataset=acme/many", "page_size=1000")
    items = m.p("acme", "many", "items")
    listed = os.listdir(items)
    assert len(set(listed)) == 6000
    assert 4096 <= m.cache_stats()["nodes"] < 4500
    # one that lists all, then stats each (find, du) looks the rest up
    for name in listed:
        assert stat.S_ISDIR(os.lstat(os.path.join(items, name)).st_mode)
    assert m.cache_stats()["nodes"] >= 6000
    # and from then on the folder's walks carry them all through
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    wait_for(lambda: m.cache_stats()["nodes"] < 100, what="forgets")
    assert sorted(os.listdir(items)) == sorted(listed)
    assert m.cache_stats()["nodes"] >= 6000


@pytest.mark.slow
def test_kill_9_mid_refresh_leaves_the_last_listing(fake_factory,
                                                   mount_factory,
                                                   tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=600")
    cache = os.path.join(tmpdir_short, "cache")
    # not the fixture's: it is killed, not unmounted
    first = Mount(fake, tmpdir_short, ["dataset=acme/cars",
                                       "cache_dir=" + cache, "ttl=1",
                                       "page_size=50"])
    want = names(first, "acme", "cars", "items")
    fake.delete("acme/cars", fake.truth("acme/cars")["items"][0]["uid"])
    fake.reset()
    fake.fault(route="items_list", latency=0.2, count=-1)
    time.sleep(1.2)
    os.listdir(first.p("acme", "cars", "items"))  # starts the refresh
    wait_for(lambda: len(list_responses(fake)) >= 3, what="pages")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    unmount(first.path)
    first.stderr.close()
    fake.call("/_fake/fault", method="DELETE")
    m = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    fake.reset()
    # the last complete listing, whole, with no request
    assert names(m, "acme", "cars", "items") == want
    assert fake.counts()["items_list"] == 0
    assert "set aside" not in m.log()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_set_aside_and_rebuilt(damage, fake_factory,
                                                     mount_factory,
                                                     tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=400")
    cache = os.path.join(tmpdir_short, "cache")
    first = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    want = names(first, "acme", "cars", "items")
    first.stop()
    db, = glob.glob(os.path.join(cache, "listings", "*.db"))
    for extra in glob.glob(db + "-*"):
        os.unlink(extra)
    if damage == "truncated":
        os.truncate(db, os.path.getsize(db) // 2)
    else:
        with open(db, "r+b") as f:
            f.write(os.urandom(4096) * (os.path.getsize(db) // 4096))
    m = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    fake.reset()
    assert names(m, "acme", "cars", "items") == want
    assert fake.counts()["items_list"] == 4
    lines = [l for l in m.log().splitlines() if "set aside" in l]
    assert len(lines) == 1, m.log()
    assert m.alive()


def test_the_cache_keeps_secrets_to_itself(fake_factory, mount_factory,
                                           tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=10")
    cache = os.path.join(tmpdir_short, "cache")
    m = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache)
    assert len(names(m, "acme", "cars", "items")) == 10
    m.stop()
    for d, dirs, files in os.walk(cache):
        if d != cache:
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
        for f in files:
            path = os.path.join(d, f)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            with open(path, "rb") as fh:
                assert KEY.encode() not in fh.read(), path


def test_a_cache_dir_that_cannot_be_written_falls_back(fake_factory,
                                                       mount_factory,
                                                       tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=10")
    blocker = os.path.join(tmpdir_short, "a-file")
    open(blocker, "w").close()
    m = mount_factory(fake, "dataset=acme/cars",
                      "cache_dir=" + os.path.join(blocker, "cache"))
    assert len(names(m, "acme", "cars", "items")) == 10
    assert "using a temporary cache folder" in m.log()
    if os.geteuid() == 0:
        ro = os.path.join(tmpdir_short, "ro")
        os.mkdir(ro)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,mode=0700", "none",
                        ro], check=True)
        try:
            m2 = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + ro)
            assert len(names(m2, "acme", "cars", "items")) == 10
            assert "using a temporary cache folder" in m2.log()
            m2.stop()
        finally:
            subprocess.run(["umount", ro])


@pytest.mark.slow
def test_two_mounts_share_one_cache_dir(fake_factory, mount_factory,
                                       tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=300")
    cache = os.path.join(tmpdir_short, "cache")
    a = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache,
                      "ttl=1", "page_size=50")
    b = mount_factory(fake, "dataset=acme/cars", "cache_dir=" + cache,
                      "ttl=1", "page_size=50")
    want = names(a, "acme", "cars", "items")
    errors = []
    stop = threading.Event()

    def read(m):
        while not stop.is_set():
            try:
                got = names(m, "acme", "cars", "items")
                if got != want:
                    errors.append((m.path, len(got)))
            except OSError as e:
                errors.append((m.path, e))

    threads = [threading.Thread(target=read, args=(m,)) for m in (a, b)]
    for t in threads:
        t.start()
    time.sleep(4)  # both refresh a few times meanwhile, in one database
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.counts()["items_list"] >= 12
    assert a.alive() and b.alive()
