# Files fetched ahead of readers that open them in listing order (or a
# folder's order), and never for readers in random order.
import os
import random
import subprocess

import pytest

from conftest import read_all, sha256_file

DS = "acme/cars"


def item_files(m, truth):
    """Each item's data file in items/, in listing order."""
    items = m.p("acme", "cars", "items")
    return [(t, os.path.join(items, t["key"], "data" +
                             os.path.splitext(t["key"])[1])) for t in truth]


def read(t, path):
    assert sha256_file(path) == t["files"]["data"]["sha256"], path


def test_listing_order_is_fetched_ahead(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=60,size_known=0.5")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=8")
    files = item_files(m, truth)
    fake.reset()
    for t, p in files[:3]:
        read(t, p)
    m.wait_idle()
    # the third open in a row started 8 files ahead
    assert fake.counts()["file"] == 3 + 8
    st = m.cache_stats()
    assert st["prefetched"] == 8 and st["ordered_opens"] >= 2
    # the reader goes on: every file is fetched once, most ahead of it
    for t, p in files[3:]:
        read(t, p)
    m.wait_idle()
    assert fake.counts()["file"] == len(files)
    assert m.cache_stats()["prefetched"] == len(files) - 3


def test_second_pass_fetches_nothing_ahead(fake_factory, mount_factory):
    # more than the memory cache holds, and no disk: whatever is fetched
    # ahead of the second pass is a request
    fake = fake_factory("--dataset", DS + ":items=80,size_known=1,"
                        "min_size=100000,max_size=150000")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=8", "cache_size=4M",
                      "cache_dir=none")
    files = item_files(m, truth)
    for t, p in files:
        read(t, p)
    m.wait_idle()
    fake.reset()
    before = m.cache_stats()["prefetched"]
    # the kernel's page cache has them (unless it let some go: those are
    # read again, but never fetched ahead)
    for t, p in files:
        read(t, p)
    m.wait_idle()
    assert m.cache_stats()["prefetched"] == before
    assert fake.counts()["file"] < len(files) // 2


def test_a_walk_the_disk_cache_holds_fetches_nothing_ahead(
        fake_factory, mount_factory, tmpdir_short):
    # read once, kept on disk: on a remount a walk in order over those files
    # is served by its reader's own reads, and what is not on disk is
    # fetched ahead again
    fake = fake_factory("--dataset", DS + ":items=300,size_known=1,"
                        "min_size=20000,max_size=40000")
    truth = fake.truth(DS)["items"]
    cache = os.path.join(tmpdir_short, "cache")
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    for t, p in item_files(m, truth)[:150]:
        read(t, p)
    m.wait_idle()
    assert m.stop() == 0
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    files = item_files(m, truth)
    fake.reset()
    for t, p in files[:150]:
        read(t, p)
    m.wait_idle()
    st = m.cache_stats()
    assert fake.counts()["file"] == 0
    # the first files fetched ahead came from the disk: then no more
    assert st["prefetched"] <= 64 and st["disk_opens"] >= 80, st
    # past what the first mount read (and fetched ahead), the network
    for t, p in files[150:]:
        read(t, p)
    m.wait_idle()
    after = m.cache_stats()
    assert after["prefetched"] - st["prefetched"] >= 60, after
    assert 150 - 32 <= fake.counts()["file"] <= 150


def test_shuffled_reader_causes_no_request_ahead(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=300,size_known=0.5")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS)
    files = item_files(m, truth)
    random.Random(7).shuffle(files)
    fake.reset()
    for t, p in files[:150]:
        read(t, p)
    m.wait_idle()
    # a shuffled reader lands near a walk's front only now and then: what
    # was fetched ahead and never read is at most 5% of what was read
    assert fake.counts()["file"] <= 150 * 1.05, fake.counts()
    assert m.cache_stats()["prefetched"] <= 150 * 0.05


def test_folder_order_is_fetched_ahead(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=120,classes=3,size_known=1")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=4")
    by_key = {t["key"]: t for t in truth}
    files = m.p("acme", "cars", "files")
    folder = sorted(e.name for e in os.scandir(files) if e.is_dir())[0]
    # the folder's files in the order it lists them
    names = [e.name for e in os.scandir(os.path.join(files, folder))
             if e.is_file()]
    assert len(names) >= 10
    fake.reset()
    for name in names[:3]:
        read(by_key[folder + "/" + name], os.path.join(files, folder, name))
    m.wait_idle()
    assert fake.counts()["file"] == 3 + 4
    assert m.cache_stats()["prefetched"] == 4


def test_prefetch_off(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=30,size_known=1")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=0")
    fake.reset()
    for t, p in item_files(m, truth):
        read(t, p)
    m.wait_idle()
    assert fake.counts()["file"] == len(truth)
    assert m.cache_stats()["prefetched"] == 0


def small_files(fake_factory, mount_factory, items):
    """A mount of @items small files with a size in the listing, their
    folder listed, counters zeroed and 30 ms on every data request: the
    fake, the mount and (truth, path) of each in listing order."""
    fake = fake_factory("--dataset", DS + ":items=%d,size_known=1,"
                        "min_size=2000,max_size=20000" % items)
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=16")
    files = item_files(m, truth)
    os.listdir(os.path.dirname(files[0][1]))
    fake.reset()
    fake.fault(route="file", latency=0.03, count=-1)
    return fake, m, files


def test_a_pool_of_readers_in_order_is_fetched_ahead(fake_factory,
                                                     mount_factory):
    # 8 threads, each taking the next file of one shared list: their opens
    # walk the listing together, a little out of order
    fake, m, files = small_files(fake_factory, mount_factory, 300)
    truth = [t for t, _ in files]
    bad = read_all({t["uid"]: p for t, p in files}, truth, in_order=True)
    m.wait_idle()
    assert bad == []
    st = m.cache_stats()
    # most files were on their way before their reader opened them, and
    # none was asked for twice
    assert st["prefetched"] >= len(files) // 2, st
    assert fake.counts()["file"] == len(files)


def test_a_shuffled_pool_causes_no_request_ahead(fake_factory,
                                                 mount_factory):
    fake = fake_factory("--dataset", DS + ":items=300,size_known=1,"
                        "min_size=2000,max_size=20000")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=16")
    files = item_files(m, truth)
    random.Random(3).shuffle(files)
    fake.reset()
    bad = read_all({t["uid"]: p for t, p in files[:150]}, truth,
                   in_order=True)
    m.wait_idle()
    assert bad == []
    # what was fetched ahead and never read: at most 5% of what was read
    assert fake.counts()["file"] <= 150 * 1.05, fake.counts()
    assert m.cache_stats()["prefetched"] <= 150 * 0.05


def test_xargs_in_order_is_fetched_ahead(fake_factory, mount_factory):
    # xargs -P8 -n1 cat: eight processes, each the next file of one list
    fake, m, files = small_files(fake_factory, mount_factory, 200)
    names = b"".join(os.fsencode(p) + b"\0" for _, p in files)
    out = subprocess.run(["xargs", "-0", "-P8", "-n1", "sha256sum"],
                         input=names, capture_output=True, check=True).stdout
    got = {os.fsdecode(line.split(b"  ", 1)[1]): line.split()[0].decode()
           for line in out.splitlines()}
    assert got == {p: t["files"]["data"]["sha256"] for t, p in files}
    m.wait_idle()
    st = m.cache_stats()
    assert st["prefetched"] >= len(files) // 2, st
    assert fake.counts()["file"] == len(files)


LOADER = """
import sys, torch
from torchvision import datasets
data = datasets.ImageFolder(sys.argv[1], loader=lambda p: open(p, "rb").read())
loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=4,
                                     shuffle=sys.argv[2] == "1",
                                     collate_fn=lambda batch: batch)
print(sum(len(batch) for batch in loader))
"""


def loader_run(m, fake, shuffle):
    root = m.p("acme", "cars", "files")
    for e in os.scandir(root):
        if e.is_dir():
            os.listdir(e.path)
    fake.reset()
    fake.fault(route="file", latency=0.03, count=-1)
    out = subprocess.run(["/usr/bin/python3", "-c", LOADER, root,
                          "1" if shuffle else "0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    m.wait_idle()
    return int(out.stdout)


def test_a_dataloader_in_order_is_fetched_ahead(fake_factory, mount_factory):
    pytest.importorskip("torchvision")
    fake = fake_factory("--dataset", DS + ":items=300,classes=2,"
                        "size_known=1,min_size=2000,max_size=20000")
    m = mount_factory(fake, "dataset=" + DS, "prefetch=16")
    # DataLoader workers without shuffle: each takes whole batches of the
    # folders' files in name order
    images = loader_run(m, fake, False)
    assert images >= 200
    st = m.cache_stats()
    # four workers a batch apart, each folder a walk of its own: a good
    # part is on its way before its worker opens it
    assert st["prefetched"] >= images // 4, st
    assert fake.counts()["file"] <= images * 1.05, fake.counts()
    # shuffled, another mount: nothing fetched that is not read (at most
    # 5% more requests than files), and a shuffled loader is not taken for
    # a walk (its workers' opens land near a front now and then: a few
    # percent, more on a slow build, are fetched ahead, and read later)
    m = mount_factory(fake, "dataset=" + DS, "prefetch=16")
    assert loader_run(m, fake, True) == images
    assert fake.counts()["file"] <= images * 1.05, fake.counts()
    st = m.cache_stats()
    assert st["prefetched"] <= images * 0.15, st


def test_name_order_is_fetched_ahead(fake_factory, mount_factory):
    # listed in reverse key order, walked in name order (sorted(), rsync,
    # ImageFolder): neither the listing's order nor the folder's
    fake = fake_factory("--dataset", DS + ":items=120,classes=2,"
                        "size_known=1,min_size=2000,max_size=20000")
    truth = fake.truth(DS)["items"]
    m = mount_factory(fake, "dataset=" + DS, "prefetch=8", "ordering=-key")
    by_key = {t["key"]: t for t in truth}
    files = m.p("acme", "cars", "files")
    folder = sorted(e.name for e in os.scandir(files) if e.is_dir())[0]
    listed = [e.name for e in os.scandir(os.path.join(files, folder))
              if e.is_file()]
    names = sorted(listed)
    assert len(names) >= 20 and listed != names
    fake.reset()
    for name in names:
        read(by_key[folder + "/" + name], os.path.join(files, folder, name))
    m.wait_idle()
    assert fake.counts()["file"] == len(names)
    assert m.cache_stats()["prefetched"] >= len(names) - 8
