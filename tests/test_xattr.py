# The platform's metadata where tools look (-o xattr): an item's folder and
# its files in every view answer listxattr and getxattr with the item's
# fields from the listing (user.avala.*), read through os.getxattr and
# getfattr; other names are ENODATA, and nothing can be set. Without the
# option the kernel is told there are none, once.
import errno
import json
import os
import subprocess

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
    # folders of no object carry none
    for p in (m.path, m.p("acme", "cars"), m.p("acme", "cars", "files")):
        assert os.listxattr(p) == []
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
