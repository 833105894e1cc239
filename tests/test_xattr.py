# The platform's metadata where tools look (-o xattr): an item's folder and
# its files in every view answer listxattr and getxattr with the item's
# fields from the listing (user.avala.*), read through os.getxattr and
# getfattr; other names are ENODATA, and nothing can be set. A dataset's
# folder tells which listing it shows (user.avalafs.listing), the root the
# mount's counters. Without the option the kernel is told there are none,
# once.
import errno
import json
import os
import re
import subprocess
import tempfile
import threading
import time

import pytest

DS = "acme/cars"
FIELDS = ("uid", "key", "status", "created_at", "updated_at",
          "annotations_count", "dataset")


@pytest.fixture
def cars(fake_factory):
    return fake_factory("--dataset", DS + ":items=12,sequences=2,updated=0.5")


def item_paths(m, t, ext, status):
    """Every path of item @t's folder and its files."""
    key = t["key"]
    folder = m.p("acme", "cars", "items", key.replace("/", "%2F"))
    data = [f for f in os.listdir(folder) if f.startswith("data")][0]
    thumb = [f for f in os.listdir(folder) if f.startswith("thumbnail")][0]
    name = key if os.path.splitext(key)[1] else key + ext
    return [folder, os.path.join(folder, data),
            os.path.join(folder, thumb),
            os.path.join(folder, "metadata.json"),
            m.p("acme", "cars", "files", name),
            m.p("acme", "cars", "thumbnails", name),
            m.p("acme", "cars", "by-status", status, name)]


def test_every_view_carries_the_items_fields(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "xattr")
    truth = cars.truth(DS)["items"]
    for t in truth[:4]:
        folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
        with open(os.path.join(folder, "metadata.json")) as f:
            meta = json.load(f)
        ext = os.path.splitext(
            [x for x in os.listdir(folder) if x.startswith("data")][0])[1]
        for p in item_paths(m, t, ext, meta["status"]):
            names = os.listxattr(p)
            want = ["user.avala." + f for f in FIELDS
                    if f == "dataset" or f in meta]
            assert sorted(names) == sorted(want), (p, names)
            assert os.getxattr(p, "user.avala.uid") == t["uid"].encode()
            assert os.getxattr(p, "user.avala.key") == t["key"].encode()
            assert os.getxattr(p, "user.avala.status") == \
                meta["status"].encode()
            assert os.getxattr(p, "user.avala.dataset") == DS.encode()
            assert os.getxattr(p, "user.avala.created_at") == \
                meta["created_at"].encode()
            assert os.getxattr(p, "user.avala.annotations_count") == \
                str(meta["annotations_count"]).encode()
            if "updated_at" in meta:
                assert os.getxattr(p, "user.avala.updated_at") == \
                    meta["updated_at"].encode()
            for name in ("user.avala.nope", "user.other", "security.selinux"):
                with pytest.raises(OSError) as e:
                    os.getxattr(p, name)
                assert e.value.errno == errno.ENODATA, (p, name)
            with pytest.raises(OSError) as e:
                os.setxattr(p, "user.avala.status", b"done")
            assert e.value.errno == errno.EROFS
            with pytest.raises(OSError) as e:
                os.removexattr(p, "user.avala.uid")
            assert e.value.errno == errno.EROFS
    # folders of no object carry none of an object's
    for p in (m.p("acme"), m.p("acme", "cars", "files"),
              m.p("acme", "cars", "items")):
        assert os.listxattr(p) == []
    assert os.listxattr(m.p("acme", "cars")) == ["user.avalafs.listing"]
    # the attributes come from the listing: no request of any kind
    cars.reset()
    for t in truth[:4]:
        folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
        for p in [folder] + [os.path.join(folder, f)
                             for f in os.listdir(folder)]:
            for name in os.listxattr(p):
                os.getxattr(p, name)
    counts = cars.counts()
    assert sum(counts[k] for k in ("file", "item_get", "items_list")) == 0


def test_getfattr_dumps_them(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "xattr")
    t = cars.truth(DS)["items"][0]
    folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
    out = subprocess.run(["getfattr", "-d", "-m", "-", folder],
                         capture_output=True, text=True, check=True).stdout
    assert 'user.avala.uid="%s"' % t["uid"] in out
    assert 'user.avala.dataset="%s"' % DS in out
    # size first, then the value: one attribute, asked both ways
    out = subprocess.run(["getfattr", "--only-values", "-n",
                          "user.avala.key", folder],
                         capture_output=True, check=True).stdout
    assert out == t["key"].encode()


def test_a_sequence_carries_its_fields(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "xattr")
    seqs = m.p("acme", "cars", "sequences")
    name = sorted(os.listdir(seqs))[0]
    folder = os.path.join(seqs, name)
    with open(os.path.join(folder, "metadata.json")) as f:
        meta = json.load(f)
    assert os.getxattr(folder, "user.avala.uid") == meta["uid"].encode()
    assert os.getxattr(folder, "user.avala.dataset") == DS.encode()


def test_without_the_option_the_kernel_stops_asking(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS)
    folder = m.p("acme", "cars", "items")
    p = os.path.join(folder, sorted(os.listdir(folder))[0])
    for _ in range(2):
        with pytest.raises(OSError) as e:
            os.getxattr(p, "user.avala.uid")
        assert e.value.errno == errno.EOPNOTSUPP
        with pytest.raises(OSError) as e:
            os.listxattr(p)
        assert e.value.errno == errno.EOPNOTSUPP


def listing_of(m):
    return json.loads(os.getxattr(m.p("acme", "cars"),
                                  "user.avalafs.listing"))


def test_a_dataset_tells_which_listing_it_shows(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "xattr", "ttl=1")
    truth = cars.truth(DS)["items"]
    os.listdir(m.p("acme", "cars", "items"))
    before = time.time()
    first = listing_of(m)
    assert first["generation"] > 0
    assert first["items"] == len(truth)
    assert first["state"] in ("current", "stale")
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", first["digest"])
    listed = time.mktime(time.strptime(first["listed_at"],
                                       "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before - 30 < listed <= time.time() + 1
    # another machine that lists the same objects at the same versions
    # says the same
    other = mount_factory(cars, "dataset=" + DS, "xattr")
    os.listdir(other.p("acme", "cars", "items"))
    assert listing_of(other)["digest"] == first["digest"]
    # a new version of one item: a new listing, another digest
    cars.reupload(DS, truth[3]["uid"])
    time.sleep(1.2)
    os.listdir(m.p("acme", "cars", "items"))
    deadline = time.time() + 10
    while listing_of(m)["generation"] == first["generation"]:
        assert time.time() < deadline, listing_of(m)
        time.sleep(0.1)
    second = listing_of(m)
    assert second["items"] == len(truth)
    assert second["digest"] != first["digest"]
    # and one object fewer: another again
    cars.delete(DS, truth[5]["uid"])
    time.sleep(1.2)
    os.listdir(m.p("acme", "cars", "items"))
    while listing_of(m)["generation"] == second["generation"]:
        assert time.time() < deadline, listing_of(m)
        time.sleep(0.1)
    third = listing_of(m)
    assert third["items"] == len(truth) - 1
    assert third["digest"] not in (first["digest"], second["digest"])


def test_a_first_listing_tells_how_far_it_came(fake_factory, mount_factory):
    fake = fake_factory("--dataset", DS + ":items=12")
    m = mount_factory(fake, "dataset=" + DS, "xattr", "page_size=5")
    fake.fault(route="items_list", count=-1, latency=0.6)
    reader = threading.Thread(
        target=os.listdir, args=(m.p("acme", "cars", "items"),))
    reader.start()
    seen = []
    deadline = time.time() + 20
    while True:
        now = listing_of(m)
        seen.append(now)
        if now.get("generation"):
            break
        assert time.time() < deadline, seen
        time.sleep(0.05)
    reader.join()
    loading = [s for s in seen if s.get("state") == "loading"]
    assert loading and all(set(s) == {"state", "items_so_far", "pages"}
                           for s in loading), seen
    assert any(0 < s["items_so_far"] < 12 and s["pages"] >= 1
               for s in loading), seen
    assert now["items"] == 12


def test_the_root_tells_the_mounts_counters(cars, mount_factory):
    m = mount_factory(cars, "dataset=" + DS, "xattr")
    names = set(os.listxattr(m.path))
    assert names == {"user.avalafs." + n for n in (
        "version", "pid", "uptime", "hitrate", "bytes_origin",
        "bytes_disk", "bytes_memory", "requests")}

    def attr(n):
        return os.getxattr(m.path, "user.avalafs." + n).decode()

    version = subprocess.run([m.cmd[0], "--version"], capture_output=True,
                             text=True).stdout
    assert attr("version") in version
    assert int(attr("pid")) == m.proc.pid
    assert 0 <= int(attr("uptime")) < 60
    assert (attr("bytes_origin"), attr("requests")) == ("0", "0")
    t = cars.truth(DS)["items"][0]
    folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
    data = os.path.join(folder, [f for f in os.listdir(folder)
                                 if f.startswith("data")][0])
    with open(data, "rb") as f:
        assert len(f.read()) == t["files"]["data"]["size"]
    assert int(attr("bytes_origin")) >= t["files"]["data"]["size"]
    assert int(attr("requests")) >= 1
    assert float(attr("hitrate")) < 50.0
    # read again past the kernel's page cache: from the mount's caches,
    # no request
    requests = int(attr("requests"))
    for _ in range(3):
        fd = os.open(data, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        with open(data, "rb") as f:
            assert len(f.read()) == t["files"]["data"]["size"]
    assert int(attr("requests")) == requests
    assert int(attr("bytes_disk")) + int(attr("bytes_memory")) >= \
        t["files"]["data"]["size"]
    assert float(attr("hitrate")) > 50.0


def test_a_remount_tells_the_listing_it_kept(cars, mount_factory,
                                              tmpdir_short):
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(cars, "dataset=" + DS, "xattr", "cache_dir=" + cache)
    os.listdir(m.p("acme", "cars", "items"))
    first = listing_of(m)
    m.stop()
    m = mount_factory(cars, "dataset=" + DS, "xattr", "cache_dir=" + cache)
    cars.reset()
    # asked before anything else: the listing kept, no list request
    again = listing_of(m)
    assert again["generation"] == first["generation"]
    assert again["digest"] == first["digest"]
    assert again["items"] == first["items"] == len(cars.truth(DS)["items"])
    assert again["listed_at"] == first["listed_at"]
    assert cars.counts()["items_list"] == 0
