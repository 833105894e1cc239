# The views of a dataset (DESIGN section 2, "Views of a dataset"): files/,
# thumbnails/ and by-status/ show each item's files at its key's path, with
# the bytes of its data file, read by the clients people point at a dataset:
# Pillow, torchvision, ImageMagick, find, os.walk and glob.
import glob
import hashlib
import math
import os
import subprocess

import pytest

from conftest import sha256_file

SPEC = "acme/photos:items=60,images=1,classes=4,sequences=2,size_known=0.5"
ITEM_STATUSES = ("unattempted", "pending", "ready_for_annotation",
                 "in_progress", "completed", "rework_required",
                 "customer_approved")


def items_of(truth):
    return [t for t in truth["items"] if t["key"]]


def data_name(t):
    """The name an item with a plain key has in the key-path views."""
    return t["key"]


def mount_photos(fake_factory, mount_factory, spec=SPEC, *opts):
    fake = fake_factory("--dataset", spec)
    m = mount_factory(fake, "dataset=acme/photos", *opts)
    return fake, m, fake.truth("acme/photos")


def files_under(root):
    """Relative paths of every file under @root, by os.walk."""
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(out)


@pytest.mark.parametrize("dialect", ["documented", "sdk"])
def test_files_and_thumbnails_mirror_the_keys(fake_factory, mount_factory,
                                              dialect):
    fake, m, truth = mount_photos(fake_factory, mount_factory,
                                  SPEC + ",dialect=" + dialect)
    root = m.p("acme", "photos")
    fake.reset()
    files, thumbs = files_under(m.p("acme", "photos", "files")), \
        files_under(m.p("acme", "photos", "thumbnails"))
    # walking the views costs the one listing and no data request
    counts = fake.counts()
    assert counts["items_list"] == 1 and counts["file"] == 0, counts
    items = items_of(truth)
    assert files == sorted(data_name(t) for t in items)
    assert thumbs == files  # one to one, under the data file's names
    for t in items:
        path = os.path.join(root, "files", data_name(t))
        item_dir = os.path.join(root, "items", t["key"].replace("/", "%2F"))
        data, = glob.glob(os.path.join(glob.escape(item_dir), "data*"))
        # one file, fetched once whichever path reads it
        assert os.stat(path).st_ino == os.stat(data).st_ino
        assert sha256_file(path) == t["files"]["data"]["sha256"]
        assert sha256_file(os.path.join(root, "thumbnails", data_name(t))) \
            == t["files"]["thumbnail"]["sha256"]
        assert os.stat(path).st_size == t["files"]["data"]["size"]
    reads = [r for r in fake.stats()["requests"] if r["route"] == "file"]
    assert len({r["path"].split("?")[0] for r in reads}) == len(reads)
    # sequences are not in the views
    assert not any("scene_" in f for f in files)
    assert m.alive()


def test_by_status_filters_by_status(fake_factory, mount_factory):
    fake, m, truth = mount_photos(fake_factory, mount_factory)
    by_status = m.p("acme", "photos", "by-status")
    shown = sorted(os.listdir(by_status))
    statuses = {t["object"]["status"] for t in truth["items"]}
    assert shown == sorted(set(ITEM_STATUSES) | statuses)
    assert "archived_v2" in shown  # an unknown status is shown as it comes
    for status in shown:
        want = sorted(data_name(t) for t in items_of(truth)
                      if t["object"]["status"] == status)
        assert files_under(os.path.join(by_status, status)) == want, status
    # a status no item has is there, and empty
    empty = [s for s in ITEM_STATUSES if s not in statuses]
    for s in empty:
        assert os.listdir(os.path.join(by_status, s)) == []
    t = items_of(truth)[0]
    f = os.path.join(by_status, t["object"]["status"], data_name(t))
    assert sha256_file(f) == t["files"]["data"]["sha256"]
    assert os.stat(f).st_ino == os.stat(
        m.p("acme", "photos", "files", data_name(t))).st_ino
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(by_status, "no_such_status"))


def test_no_status_no_by_status(fake_factory, mount_factory):
    fake, m, truth = mount_photos(fake_factory, mount_factory,
                                  SPEC + ",dialect=sdk")
    assert sorted(os.listdir(m.p("acme", "photos"))) == [
        "files", "items", "sequences", "thumbnails"]
    with pytest.raises(FileNotFoundError):
        os.stat(m.p("acme", "photos", "by-status"))


def test_every_image_decodes_with_the_size_its_metadata_gives(
        fake_factory, mount_factory):
    from PIL import Image
    fake, m, truth = mount_photos(fake_factory, mount_factory)
    root = m.p("acme", "photos")
    for t in items_of(truth):
        meta = t["object"]["metadata"]
        with Image.open(os.path.join(root, "files", data_name(t))) as im:
            im.load()
            assert im.size == (meta["width"], meta["height"])
            assert im.format == {"jpeg": "JPEG", "png": "PNG"}[meta["format"]]
        with Image.open(os.path.join(root, "thumbnails", data_name(t))) as im:
            im.load()
            assert im.size == (meta["width"] // 4, meta["height"] // 4)
    # and ImageMagick agrees
    some = [os.path.join(root, "files", data_name(t))
            for t in items_of(truth)[:8]]
    out = subprocess.run(["identify", "-format", "%w %h\n"] + some,
                         capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:8] == [
        "%d %d" % (t["object"]["metadata"]["width"],
                   t["object"]["metadata"]["height"])
        for t in items_of(truth)[:8]]


def test_walk_glob_and_find_see_each_item_once_per_view(fake_factory,
                                                        mount_factory):
    fake, m, truth = mount_photos(fake_factory, mount_factory)
    items = items_of(truth)
    for view in ("files", "thumbnails"):
        root = m.p("acme", "photos", view)
        found = sorted(os.path.relpath(p, root) for p in glob.glob(
            os.path.join(root, "**", "*.*"), recursive=True)
            if os.path.isfile(p))
        assert found == sorted(data_name(t) for t in items)
        jpgs = glob.glob(os.path.join(root, "**", "*.jpg"), recursive=True)
        assert len(jpgs) == sum(t["key"].endswith(".jpg") for t in items)
        inodes = [os.stat(p).st_ino for p in jpgs]
        assert len(set(inodes)) == len(inodes)
        out = subprocess.run(["find", root, "-type", "f"], check=True,
                             capture_output=True, text=True).stdout
        assert len(out.splitlines()) == len(items)


def test_imagefolder_and_a_shuffling_dataloader_read_every_image_once(
        fake_factory, mount_factory):
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    fake, m, truth = mount_photos(fake_factory, mount_factory)
    root = m.p("acme", "photos", "files")
    items = items_of(truth)
    in_classes = [t for t in items if "/" in t["key"]]
    classes = sorted({t["key"].split("/")[0] for t in in_classes})
    folder = datasets.ImageFolder(root, transform=transforms.PILToTensor())
    assert folder.classes == classes
    assert len(folder) == len(in_classes)
    # every image decodes to its size, with its class
    by_path = {os.path.join(root, t["key"]): t for t in in_classes}
    for (path, label), (tensor, label2) in zip(folder.samples, folder):
        t = by_path[path]
        meta = t["object"]["metadata"]
        assert tuple(tensor.shape) == (3, meta["height"], meta["width"])
        assert label == label2 == classes.index(t["key"].split("/")[0])

    # raw bytes through a DataLoader with workers and shuffling
    def read(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    raw = datasets.ImageFolder(root, loader=read)
    loader = torch.utils.data.DataLoader(raw, batch_size=7, shuffle=True,
                                         num_workers=2,
                                         collate_fn=lambda batch: batch)
    seen = [digest for batch in loader for digest, _ in batch]
    assert sorted(seen) == sorted(t["files"]["data"]["sha256"]
                                  for t in in_classes)


@pytest.mark.slow
def test_the_example_trains_over_a_mount(fake_factory, mount_factory):
    pytest.importorskip("torchvision")
    fake, m, truth = mount_photos(fake_factory, mount_factory)
    example = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "examples", "imagefolder.py")
    r = subprocess.run(["/usr/bin/python3", example,
                        m.p("acme", "photos", "files"), "--epochs", "2",
                        "--workers", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n = len([t for t in items_of(truth) if "/" in t["key"]])
    assert "%d images in 4 classes" % n in r.stdout
    assert r.stdout.count("epoch ") == 2


def test_hostile_keys_never_make_bad_names_or_hide_an_item(fake_factory,
                                                          mount_factory):
    fake = fake_factory("--dataset", "acme/evil:items=3,hostile=1")
    m = mount_factory(fake, "dataset=acme/evil")
    truth = fake.truth("acme/evil")["items"]
    root = os.fsencode(m.p("acme", "evil", "files"))
    inodes = {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            assert n not in (b"", b".", b"..") and b"/" not in n
            assert len(n) <= 255
        for n in names:
            st = os.stat(os.path.join(d, n))
            assert st.st_ino not in inodes
            inodes[st.st_ino] = os.path.join(d, n)
    # every item is there, each under its own name, with its own bytes
    assert len(inodes) == len(truth)
    digests = sorted(sha256_file(p) for p in inodes.values())
    assert digests == sorted(t["files"]["data"]["sha256"] for t in truth)
    # "a/b.jpg" is a path; "dup.jpg" twice: both get ~uid8
    assert os.path.isfile(os.path.join(root, b"a", b"b.jpg"))
    dups = [t["uid"] for t in truth if t["key"] == "dup.jpg"]
    names = os.listdir(root)
    for uid in dups:
        assert b"dup~" + uid[:8].encode() + b".jpg" in names
    assert b"dup.jpg" not in names


@pytest.mark.slow
def test_a_refresh_changes_every_view_together(fake_factory, mount_factory):
    fake, m, truth = mount_photos(fake_factory, mount_factory, SPEC,
                                  "ttl=1")
    gone = items_of(truth)[0]
    path = m.p("acme", "photos", "files", data_name(gone))
    assert os.path.exists(path)
    fake.delete("acme/photos", gone["uid"])
    fake.reset()
    deadline = math.inf
    import time
    deadline = time.time() + 10
    while os.path.exists(path):
        assert time.time() < deadline
        time.sleep(0.3)
    for view in ("thumbnails", os.path.join("by-status",
                                            gone["object"]["status"])):
        assert not os.path.exists(m.p("acme", "photos", view,
                                      data_name(gone)))
    assert gone["key"].replace("/", "%2F") not in os.listdir(
        m.p("acme", "photos", "items"))
    # one listing for all the views
    assert fake.counts()["items_list"] <= 2
