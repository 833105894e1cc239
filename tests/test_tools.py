# What everyday tools see: times that come from the objects and hold across
# mounts, so rsync and tar work as on a disk; cp, mmap and sendfile read the
# same bytes as read(2).
import json
import mmap
import os
import subprocess
import time
from datetime import datetime

from conftest import sha256_file

SPEC = "acme/cars:items=8,sequences=2,updated=0.5,size_known=1"


def object_time_ns(obj):
    """updated_at, else created_at, in nanoseconds since the epoch."""
    text = obj.get("updated_at") or obj["created_at"]
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def by_uid(root, kind):
    """{uid: directory} of the items or sequences under @root."""
    out = {}
    top = os.path.join(root, kind)
    for name in os.listdir(top):
        with open(os.path.join(top, name, "metadata.json")) as f:
            out[json.load(f)["uid"]] = os.path.join(top, name)
    return out


def tree_times(root, unit=1):
    """{relative path: st_mtime_ns // unit} of everything under @root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            out[os.path.relpath(p, root)] = os.lstat(p).st_mtime_ns // unit
    return out


def generated(path):
    """Whether @path is a file avalafs writes itself (its text may change
    with the listing): metadata.json, status, views/*.json."""
    return os.path.basename(path) in ("metadata.json", "status") or \
        os.path.basename(os.path.dirname(path)) == "views"


# the directories of a dataset that are no object's: its top, the lists,
# and the folders of the views
PLAIN_DIRS = (".", "items", "sequences")
VIEWS = ("files", "thumbnails", "by-status")


def plain_dir(rel):
    return rel in PLAIN_DIRS or rel.split("/")[0] in VIEWS


def plain_dirs(root):
    """The relative paths of the directories under @root that are no
    object's."""
    return sorted(rel for rel in [".", *tree_times(root)]
                  if plain_dir(rel) and os.path.isdir(os.path.join(root, rel)))


def test_times_come_from_the_object(fake_factory, mount_factory):
    fake = fake_factory("--dataset", SPEC)
    truth = fake.truth("acme/cars")
    started = time.time_ns() - 10**9
    m = mount_factory(fake, "dataset=acme/cars")
    root = m.p("acme", "cars")
    updated = {"items": 0, "sequences": 0}
    seen = 0
    for kind in ("items", "sequences"):
        dirs = by_uid(root, kind)
        assert len(dirs) == len(truth[kind])
        for t in truth[kind]:
            want = object_time_ns(t["object"])
            updated[kind] += "updated_at" in t["object"]
            d = dirs[t["uid"]]
            for rel, ns in tree_times(d).items():
                p = os.path.join(d, rel)
                st = os.stat(p)
                assert st.st_mtime_ns == ns
                assert st.st_ctime_ns == ns and st.st_atime_ns == ns
                if generated(p):
                    assert ns >= started, p
                else:
                    assert ns == want, (p, t["object"])
                    seen += 1
            assert os.stat(d).st_mtime_ns == want
    # both spellings were there to read, for both kinds
    assert updated == {"items": 4, "sequences": 1}
    # each item: data and thumbnail; each sequence: views/ and its image
    assert seen == 8 * 2 + 2 * 2
    for rel in PLAIN_DIRS:
        assert os.stat(os.path.join(root, rel)).st_mtime_ns >= started
    assert os.stat(m.p("acme")).st_mtime_ns >= started


def test_times_hold_across_mounts(fake_factory, mount_factory):
    fake = fake_factory("--dataset", SPEC)
    first = mount_factory(fake, "dataset=acme/cars")
    before = tree_times(first.p("acme", "cars"))
    first.stop()
    time.sleep(1.1)  # a mount time would differ now
    second = mount_factory(fake, "dataset=acme/cars")
    after = tree_times(second.p("acme", "cars"))
    assert sorted(after) == sorted(before)
    changed = sorted(rel for rel in after if after[rel] != before[rel])
    root = second.p("acme", "cars")
    assert changed == sorted(rel for rel in after if generated(rel) or (
        plain_dir(rel) and os.path.isdir(os.path.join(root, rel))))
    # each item: its folder, data and thumbnail, and its data and
    # thumbnail in files/, thumbnails/ and by-status/; each sequence: its
    # folder, views/ and its image
    assert len(after) - len(changed) == 8 * 6 + 2 * 3


def test_rsync_again_after_a_remount_reads_nothing(fake_factory,
                                                     mount_factory,
                                                     tmpdir_short):
    fake = fake_factory("--dataset", SPEC)
    truth = fake.truth("acme/cars")
    dst = os.path.join(tmpdir_short, "copy")
    m = mount_factory(fake, "dataset=acme/cars")
    subprocess.run(["rsync", "-a", m.p("acme", "cars") + "/", dst],
                   check=True)
    m.stop()
    copied = by_uid(dst, "items")
    for t in truth["items"]:
        for name, f in t["files"].items():
            ext = os.path.splitext(t["key"])[1]
            assert sha256_file(os.path.join(copied[t["uid"]], name + ext)) \
                == f["sha256"]
    # a new mount, seconds later: rsync finds every streamed file and
    # object directory up to date by size and time; it copies again only
    # the generated files and touches the directories that are no object's
    time.sleep(1.1)
    m = mount_factory(fake, "dataset=acme/cars")
    fake.reset()
    r = subprocess.run(["rsync", "-a", "-i", m.p("acme", "cars") + "/", dst],
                       check=True, capture_output=True, text=True)
    lines = r.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith(".d")) == [
        ".d..t...... %s/" % d for d in plain_dirs(m.p("acme", "cars"))]
    files = [line.split(" ", 1)[1] for line in lines
             if not line.startswith(".d")]
    assert files and all(generated(f) for f in files), lines
    assert len(files) == 8 * 2 + 2 * 2 + sum(
        len(t["views"]) for t in truth["sequences"])
    # no data file is read; a thumbnail's size, which no listing gives, is
    # learned once, from a first request that asks for up to 256 KiB: it
    # brings a small file whole
    asked = [(q["path"].split("?")[0], q["range"])
             for q in fake.stats()["requests"] if q["route"] == "file"]
    assert len(asked) == len(truth["items"]) + len(truth["sequences"])
    assert len({path for path, _ in asked}) == len(asked)
    assert {path.split("/")[-2] for path, _ in asked} == \
        {"thumbnail", "featured"}
    assert {rng for _, rng in asked} == {"bytes=0-262143"}


def test_tar_sees_nothing_change(fake_factory, mount_factory, tmpdir_short):
    fake = fake_factory("--dataset", SPEC.replace("size_known=1",
                                                  "size_known=0.5"))
    truth = fake.truth("acme/cars")
    m = mount_factory(fake, "dataset=acme/cars")
    archive = os.path.join(tmpdir_short, "cars.tar")
    r = subprocess.run(["tar", "-cf", archive, "-C", m.p("acme"), "cars"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    out = os.path.join(tmpdir_short, "untar")
    os.mkdir(out)
    subprocess.run(["tar", "-xf", archive, "-C", out], check=True)
    # the archive keeps whole seconds
    assert tree_times(os.path.join(out, "cars"), 10**9) == \
        tree_times(m.p("acme", "cars"), 10**9)
    copied = by_uid(os.path.join(out, "cars"), "items")
    for t in truth["items"]:
        ext = os.path.splitext(t["key"])[1]
        assert sha256_file(os.path.join(copied[t["uid"]], "data" + ext)) == \
            t["files"]["data"]["sha256"]


def test_cp_mmap_and_sendfile_read_the_same_bytes(fake_factory,
                                                   mount_factory,
                                                   tmpdir_short):
    fake = fake_factory("--dataset", "acme/big:items=2,min_size=%d,"
                        "max_size=%d,size_known=1" % (3 << 20, 12 << 20))
    m = mount_factory(fake, "dataset=acme/big")
    dirs = by_uid(m.p("acme", "big"), "items")
    for i, t in enumerate(fake.truth("acme/big")["items"]):
        src = os.path.join(dirs[t["uid"]],
                           "data" + os.path.splitext(t["key"])[1])
        want = fake.file_bytes("acme/big", t["uid"])
        # cp may use copy_file_range or sendfile
        dst = os.path.join(tmpdir_short, "cp-%d" % i)
        subprocess.run(["cp", src, dst], check=True)
        assert open(dst, "rb").read() == want
        # pages faulted in by a mapping, from the end backwards
        with open(src, "rb") as f, \
                mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert len(mm) == len(want)
            for off in range(len(want) - 4096, -1, -(1 << 20)):
                assert mm[off:off + 4096] == want[off:off + 4096]
            assert mm[:] == want
        dst = os.path.join(tmpdir_short, "sendfile-%d" % i)
        with open(src, "rb") as f, open(dst, "wb") as out:
            sent = 0
            while sent < len(want):
                n = os.sendfile(out.fileno(), f.fileno(), sent,
                                len(want) - sent)
                assert n > 0
                sent += n
        assert open(dst, "rb").read() == want
