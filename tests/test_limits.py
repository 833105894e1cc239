# A server that loops, lies about sizes or stalls a listing never wedges a
# reader: listings end, waits are bounded, sizes come only from consistent
# answers, bytes the kernel let go are still here, and enough requests go
# out at once.
import errno
import os
import threading
import time

import pytest

from conftest import KEY, sha256_file


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def data_path(m, ds, t):
    return m.p(*ds.split("/"), "items", t["key"],
               "data" + os.path.splitext(t["key"])[1])


def list_requests(fake):
    return fake.counts()["items_list"]


def test_a_cursor_loop_with_new_cursor_texts_ends(fake_factory,
                                                  mount_factory):
    """next leads back to the same page under a new cursor every time: the
    listing ends at the first page that adds nothing new."""
    fake = fake_factory("--dataset", "acme/loop:items=250")
    m = mount_factory(fake, "dataset=acme/loop", "timeout=5")
    fake.reset()
    fake.fault(route="items_list", nonce_cursor=True, count=-1)
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(m.proc.pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    try:
        with pytest.raises(OSError) as e:
            os.listdir(m.p("acme", "loop", "items"))
    finally:
        done.set()
        watcher.join()
    assert e.value.errno == errno.EIO
    assert time.monotonic() - start < 5
    assert list_requests(fake) <= 3, fake.counts()
    assert peak[0] < 64 * 1024, "RSS %d KiB" % peak[0]
    lines = [l for l in m.log().splitlines() if "adds no new object" in l]
    assert len(lines) == 1 and "/items/?limit=" in lines[0], m.log()
    assert KEY not in m.log()
    # the listing works again once the server does
    fake.call("/_fake/fault", method="DELETE")
    deadline = time.time() + 10
    while True:
        try:
            assert len(os.listdir(m.p("acme", "loop", "items"))) == 250
            break
        except OSError as err:
            assert err.errno == errno.EIO and time.time() < deadline
            time.sleep(0.2)
    assert m.alive()


def test_a_listing_past_list_timeout_ends(fake_factory, mount_factory):
    """Pages that each bring something new, but too slowly: the listing
    deadline ends it, with one log line."""
    fake = fake_factory("--dataset", "acme/slow:items=400")
    m = mount_factory(fake, "dataset=acme/slow", "page_size=10",
                      "list_timeout=1", "timeout=10")
    fake.fault(route="items_list", latency=0.1, count=-1)
    start = time.monotonic()
    with pytest.raises(OSError) as e:
        os.listdir(m.p("acme", "slow", "items"))
    took = time.monotonic() - start
    assert e.value.errno == errno.EIO
    assert 1 <= took < 3, took
    assert "(list_timeout)" in m.log()
    assert m.alive()


def test_a_reader_on_a_stalled_first_listing_is_answered_in_time(
        fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=3")
    m = mount_factory(fake, "dataset=acme/cars", "timeout=2")
    fake.fault(route="items_list", stall=True, count=-1)
    start = time.monotonic()
    with pytest.raises(OSError) as e:
        os.listdir(m.p("acme", "cars", "items"))
    assert e.value.errno == errno.EIO
    assert time.monotonic() - start < 2 + 1
    # a second reader is answered in time too
    start = time.monotonic()
    with pytest.raises(OSError):
        os.stat(m.p("acme", "cars", "items", "frame_000000.jpg"))
    assert time.monotonic() - start < 2 + 1
    fake.call("/_fake/fault", method="DELETE")
    assert m.alive()


def test_a_stalled_refresh_serves_the_last_listing_in_time(fake_factory,
                                                          mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=3")
    m = mount_factory(fake, "dataset=acme/cars", "timeout=2", "ttl=1")
    items = m.p("acme", "cars", "items")
    names = sorted(os.listdir(items))
    assert len(names) == 3
    fake.fault(route="items_list", stall=True, count=-1)
    time.sleep(1.5)
    start = time.monotonic()
    assert sorted(os.listdir(items)) == names
    assert time.monotonic() - start < 2 + 1
    fake.call("/_fake/fault", method="DELETE")
    assert m.alive()


@pytest.mark.parametrize("size_known", [0, 1])
@pytest.mark.slow
def test_a_wrong_total_never_becomes_a_size(size_known, fake_factory,
                                            mount_factory):
    """A Content-Range whose total contradicts the bytes sent (or
    metadata.size) is a bad answer: retried, then EIO, never a size."""
    fake = fake_factory("--dataset", "acme/cars:items=4,size_known=%d,"
                        "min_size=20000,max_size=300000" % size_known)
    m = mount_factory(fake, "dataset=acme/cars", "timeout=2")
    truth = fake.truth("acme/cars")["items"]
    t = truth[0]
    path = data_path(m, "acme/cars", t)
    # twice wrong, then right: the retry gives the true size and bytes
    fake.fault(route="file", wrong_total=999, count=2)
    assert os.stat(path).st_size == t["files"]["data"]["size"]
    assert sha256_file(path) == t["files"]["data"]["sha256"]
    # always wrong: EIO, and the size is not learned from it
    t = truth[1]
    path = data_path(m, "acme/cars", t)
    lie = 999 if not size_known else t["files"]["data"]["size"] + 5000
    fake.fault(route="file", wrong_total=lie, count=-1)
    with pytest.raises(OSError) as e:
        os.stat(path) if not size_known else open(path, "rb").read()
    assert e.value.errno == errno.EIO
    fake.call("/_fake/fault", method="DELETE")
    time.sleep(1.1)  # a file that just failed fails at once for a second
    assert os.stat(path).st_size == t["files"]["data"]["size"]
    assert sha256_file(path) == t["files"]["data"]["sha256"]
    assert m.alive()


@pytest.mark.skipif(os.geteuid() != 0, reason="drop_caches needs root")
@pytest.mark.drops_caches
def test_a_reread_after_the_kernel_dropped_its_pages_makes_no_request(
        fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=20,size_known=1,"
                        "min_size=20000,max_size=300000")
    m = mount_factory(fake, "dataset=acme/cars", "cache_size=64M")
    truth = fake.truth("acme/cars")["items"]
    for t in truth:
        assert sha256_file(data_path(m, "acme/cars", t)) == \
            t["files"]["data"]["sha256"]
    m.wait_idle()
    fake.reset()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")
    # even with the server gone
    fake.fault(route="file", status=503, count=-1)
    for t in truth:
        assert sha256_file(data_path(m, "acme/cars", t)) == \
            t["files"]["data"]["sha256"]
    assert fake.counts()["file"] == 0
    assert m.cache_stats()["cache_used"] <= 64 << 20


def test_many_readers_get_as_many_requests_in_flight(fake_factory,
                                                     mount_factory):
    """With default options, 48 readers of 48 files each have their request
    at the server at once (max_conns, and the kernel's max_background)."""
    fake = fake_factory("--dataset", "acme/wide:items=48,size_known=1,"
                        "min_size=1000,max_size=5000")
    m = mount_factory(fake, "dataset=acme/wide")
    truth = fake.truth("acme/wide")["items"]
    for t in truth:
        os.stat(data_path(m, "acme/wide", t))
    fake.reset()
    fake.fault(route="file", latency=1.0, count=-1)
    barrier = threading.Barrier(len(truth))
    got = {}

    def read(t):
        barrier.wait()
        got[t["uid"]] = sha256_file(data_path(m, "acme/wide", t))

    threads = [threading.Thread(target=read, args=(t,)) for t in truth]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert got == {t["uid"]: t["files"]["data"]["sha256"] for t in truth}
    peak = fake.stats()["peaks"]["file"]
    assert peak >= 40, peak
