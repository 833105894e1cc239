# Nothing on disk turns a mount against its user (DESIGN section 6, "Who
# may touch it"): as root, the tests plant in the cache folder what another
# user could have (links, FIFOs, entries, databases owned by uid 65534),
# mount, read, and check that nothing outside the cache folder changed,
# that every byte read is the origin's, that every read ends and that the
# daemon exits at unmount. Then a full disk, a database damaged inside,
# listings larger than the cache, and the owner checks of the folder.
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
import time

import pytest

from conftest import BINARY, KEY, Mount, sha256_file, unmount

DS = "acme/cars"
OTHER = 65534  # nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="plants files as another user")


def plant(path):
    """Make @path (a link too) another user's, as if they had put it."""
    os.chown(path, OTHER, OTHER, follow_symlinks=False)


def snapshot(root):
    """Names, types, modes, owners and contents under @root (links not
    followed), to show that nothing there changed."""
    seen = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            body = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    body = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            seen[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, body)
    st = os.lstat(root)
    seen["."] = (st.st_mode, st.st_uid, None)
    return seen


def item_paths(m, truth):
    items = m.p("acme", "cars", "items")
    return {t["uid"]: os.path.join(items, t["key"], "data" +
                                   os.path.splitext(t["key"])[1])
            for t in truth}


def read_checked(m, truth, timeout=30):
    """Read every item's data file on a thread each with a deadline: every
    read ends, with the origin's bytes. Returns the failures."""
    bad = []

    def one(uid, path, want):
        try:
            if sha256_file(path) != want:
                bad.append((uid, "bytes"))
        except OSError as e:
            bad.append((uid, e))

    threads = []
    for t in truth:
        th = threading.Thread(target=one, args=(
            t["uid"], item_paths(m, [t])[t["uid"]],
            t["files"]["data"]["sha256"]), daemon=True)
        th.start()
        threads.append(th)
    deadline = time.time() + timeout
    for th in threads:
        th.join(max(0.1, deadline - time.time()))
    hung = sum(th.is_alive() for th in threads)
    assert hung == 0, "%d reads never ended" % hung
    return bad


def entries(cache):
    return glob.glob(os.path.join(cache, "data", "??", "*"))


@pytest.fixture
def cars(fake_factory):
    return fake_factory("--dataset", DS + ":items=30,min_size=3000,"
                        "max_size=30000")


@pytest.fixture
def outside(tmpdir_short):
    """A folder outside the cache with what a victim cares about."""
    d = os.path.join(tmpdir_short, "outside")
    os.mkdir(d, 0o755)
    for name in ("2024-report.pdf", "02265526.0", "4194305.1", "keep"):
        with open(os.path.join(d, name), "w") as f:
            f.write(name)
    tool = os.path.join(d, "tool")
    shutil.copy("/bin/true", tool)
    os.chmod(tool, 0o4755)
    return d


def new_cache(tmpdir_short, name="cache"):
    cache = os.path.join(tmpdir_short, name)
    os.mkdir(cache, 0o700)
    return cache


def test_links_planted_in_the_cache_folder_are_never_followed(
        cars, mount_factory, tmpdir_short, outside):
    truth = cars.truth(DS)["items"]
    cases = {
        "listings": lambda c: os.symlink(outside, os.path.join(c,
                                                               "listings")),
        "listings-setuid": lambda c: os.symlink(
            os.path.join(outside, "tool"), os.path.join(c, "listings")),
        "data-tmp": lambda c: (os.mkdir(os.path.join(c, "data"), 0o700),
                               os.symlink(outside,
                                          os.path.join(c, "data", "tmp"))),
        "index-missing": lambda c: (
            os.mkdir(os.path.join(c, "data"), 0o700),
            os.symlink(os.path.join(outside, "made-by-root"),
                       os.path.join(c, "data", "index.db"))),
        "index-empty": lambda c: (
            os.mkdir(os.path.join(c, "data"), 0o700),
            open(os.path.join(outside, "empty"), "w").close(),
            os.symlink(os.path.join(outside, "empty"),
                       os.path.join(c, "data", "index.db"))),
        "data": lambda c: os.symlink(outside, os.path.join(c, "data")),
        "data-sub": lambda c: [os.mkdir(os.path.join(c, "data"), 0o700)] + [
            os.symlink(outside, os.path.join(c, "data", "%02x" % i))
            for i in range(256)],
    }
    for name, make in cases.items():
        cache = new_cache(tmpdir_short, "cache-" + name)
        make(cache)
        for d, dirs, files in os.walk(cache):
            for n in dirs + files:
                plant(os.path.join(d, n))
        before = snapshot(outside)
        cars.reset()
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
        assert read_checked(m, truth) == [], name
        assert m.stop() == 0, name
        assert snapshot(outside) == before, name
        for sub in ("listings", "data", "data/tmp"):
            p = os.path.join(cache, sub)
            if os.path.lexists(p):
                st = os.lstat(p)
                assert stat.S_ISDIR(st.st_mode), (name, sub)
                assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
        # what was read is kept in the cache's own folders
        assert entries(cache), name


def test_planted_entries_and_fifos_are_not_believed(cars, mount_factory,
                                                    tmpdir_short):
    truth = cars.truth(DS)["items"]
    cache = new_cache(tmpdir_short)
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_checked(m, truth) == []
    assert m.stop() == 0
    kept = sorted(entries(cache))
    assert len(kept) == len(truth)
    # entries another user could have made: the genuine bytes, under the
    # other user's name; a FIFO; a second link
    for p in kept[:10]:
        plant(p)
    for p in kept[10:15]:
        os.unlink(p)
        os.mkfifo(p, 0o600)
        plant(p)
    for i, p in enumerate(kept[15:20]):
        os.link(p, os.path.join(cache, "hardlink%d" % i))
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_checked(m, truth) == []
    # every planted one fetched again from the origin, the rest from disk
    assert cars.counts()["file"] == 20
    assert m.stop() == 0
    for p in kept[:15]:
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, p


def test_a_planted_listing_database_is_not_believed(cars, fake_factory,
                                                    mount_factory,
                                                    tmpdir_short):
    truth = cars.truth(DS)["items"]
    first = new_cache(tmpdir_short, "first")
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + first)
    assert len(os.listdir(m.p("acme", "cars", "items"))) == len(truth)
    assert m.stop() == 0
    # the other user's copy, its data URLs pointing at a server of theirs
    evil = fake_factory("--dataset", DS + ":items=30,seed=99")
    cache = new_cache(tmpdir_short)
    os.mkdir(os.path.join(cache, "listings"), 0o700)
    (db,) = glob.glob(os.path.join(first, "listings", "*.db"))
    planted = os.path.join(cache, "listings", os.path.basename(db))
    shutil.copy(db, planted)
    con = sqlite3.connect(planted)
    con.execute("UPDATE listed SET json = replace(json, ?, ?)",
                ("127.0.0.1:%d" % cars.port, "127.0.0.1:%d" % evil.port))
    con.commit()
    con.close()
    plant(planted)
    cars.reset()
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert read_checked(m, truth) == []
    assert cars.counts()["items_list"] >= 1
    assert evil.counts()["file"] == 0
    assert m.stop() == 0
    for p in glob.glob(os.path.join(cache, "listings", "*")):
        st = os.lstat(p)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, p


def test_a_listing_file_made_first_by_another_user_gets_nothing(
        cars, mount_factory, tmpdir_short):
    cache = new_cache(tmpdir_short)
    probe = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert os.listdir(probe.p("acme", "cars", "items"))
    assert probe.stop() == 0
    (db,) = glob.glob(os.path.join(cache, "listings", "*.db"))
    for p in glob.glob(os.path.join(cache, "listings", "*")):
        os.unlink(p)
    # made first, 0666, by the other user, who keeps it open
    fd = os.open(db, os.O_CREAT | os.O_RDWR, 0o666)
    os.chmod(db, 0o666)
    plant(db)
    try:
        cars.reset()
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
        assert os.listdir(m.p("acme", "cars", "items"))
        assert m.stop() == 0
        assert os.fstat(fd).st_size == 0
        assert os.read(fd, 100) == b""
        for p in glob.glob(os.path.join(cache, "listings", "*")):
            st = os.lstat(p)
            assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, p
    finally:
        os.close(fd)


def mounted(path):
    """Whether @path is a mount point (also one root may not look into)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def start(cache, fake, where, *options, user=None):
    """Run avalafs in the foreground on a new folder in @where until it
    mounts or exits: the process, and its mount point."""
    mnt = os.path.join(where, "mnt-%d" % time.monotonic_ns())
    os.mkdir(mnt)
    env = dict(os.environ, AVALA_API_KEY=KEY)
    cmd = [BINARY, "-f", "-o", ",".join(["api_url=" + fake.api_url,
                                         "cache_dir=" + cache] +
                                        list(options)), mnt]
    if user is not None:
        os.chown(mnt, user, user)
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user,
               "--clear-groups"] + cmd
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while not mounted(mnt) and p.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    return p, mnt


@pytest.mark.parametrize("how", ["other-owner", "group-write", "other-write",
                                 "parent-writable", "link"])
def test_an_unsafe_cache_folder_refuses_the_mount(cars, tmpdir_short, how):
    base = os.path.join(tmpdir_short, "base")
    os.mkdir(base, 0o755)
    cache = os.path.join(base, "cache")
    os.mkdir(cache, 0o700)
    named = cache
    if how == "other-owner":
        plant(cache)
    elif how == "group-write":
        os.chmod(cache, 0o770)
    elif how == "other-write":
        os.chmod(cache, 0o777)
    elif how == "parent-writable":
        os.chmod(base, 0o777)
    elif how == "link":
        # a link in the path is resolved first; the folder it leads to is
        # what is checked: another user's
        plant(cache)
        named = os.path.join(tmpdir_short, "via-link")
        os.symlink(cache, named)
    before = snapshot(base)
    t0 = time.time()
    p, mnt = start(named, cars, tmpdir_short, "dataset=" + DS)
    try:
        _, err = p.communicate(timeout=20)
    finally:
        unmount(mnt)
    assert p.returncode != 0
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "cache_dir" in lines[0] and "mode" in lines[0], lines
    assert ("chmod" in lines[0] or "chown" in lines[0]), lines
    assert time.time() - t0 < 10
    assert snapshot(base) == before
    assert cars.counts()["items_list"] == 0


def test_a_sticky_shared_folder_above_is_fine(cars, mount_factory,
                                              tmpdir_short):
    shared = os.path.join(tmpdir_short, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    m = mount_factory(cars, "dataset=" + DS,
                      "cache_dir=" + os.path.join(shared, "mine"))
    assert os.listdir(m.p("acme", "cars", "items"))
    st = os.stat(os.path.join(shared, "mine"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


@pytest.fixture
def fuse_for_all():
    """/dev/fuse open to every user, as Debian makes it (0666), for the
    test's life: a machine may have it root's alone."""
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", mode | 0o666)
    yield
    os.chmod("/dev/fuse", mode)


def test_an_ordinary_user_mounts_with_a_private_cache_and_no_core(
        cars, tmpdir_short, fuse_for_all):
    home = os.path.join(tmpdir_short, "home")
    os.mkdir(home, 0o755)
    os.chmod(tmpdir_short, 0o755)
    plant(home)
    cache = os.path.join(home, "cache")
    p, mnt = start(cache, cars, home, "dataset=" + DS, user=OTHER)
    try:
        assert mounted(mnt), p.stderr.read().decode()
        out = subprocess.run(["setpriv", "--reuid=%d" % OTHER,
                              "--regid=%d" % OTHER, "--clear-groups",
                              "ls", os.path.join(mnt, "acme", "cars",
                                                 "items")],
                             capture_output=True, check=True)
        assert len(out.stdout.split()) == 30
        # not dumpable: its /proc files are root's, not the user's, so no
        # core dump and no debugger of that user reads the key
        assert os.stat("/proc/%d/environ" % p.pid).st_uid == 0
        st = os.stat(cache)
        assert st.st_uid == OTHER and stat.S_IMODE(st.st_mode) == 0o700
    finally:
        unmount(mnt)
        p.wait(10)
    assert p.returncode == 0


@pytest.fixture
def big(fake_factory):
    # ~35 MB of data: more than a 20 MiB cache folder holds
    return fake_factory("--dataset", DS + ":items=200,size_known=0.5,"
                        "min_size=150000,max_size=200000")


@pytest.mark.slow
def test_a_full_cache_disk_never_locks_the_dataset(big, mount_factory,
                                                   tmpdir_short):
    cache = os.path.join(tmpdir_short, "small")
    os.mkdir(cache)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0700",
                    "tmpfs", cache], check=True)
    try:
        truth = big.truth(DS)["items"]
        for attempt in range(2):
            m = mount_factory(big, "dataset=" + DS, "cache_dir=" + cache,
                              "ttl=1")
            assert read_checked(m, truth, timeout=120) == []
            # it is full: entries are written behind the reads, so the
            # refusals come once the writer got to them
            deadline = time.time() + 60
            while m.cache_stats()["disk_refused"] == 0:
                assert time.time() < deadline, m.cache_stats()
                time.sleep(0.2)
            # listed again while full: the data gives the listing room
            lists = big.counts()["items_list"]
            time.sleep(1.2)
            items = m.p("acme", "cars", "items")
            for _ in range(2):
                assert len(os.listdir(items)) == len(truth)
                for t in truth:
                    os.stat(os.path.join(items, t["key"], "data" +
                                         os.path.splitext(t["key"])[1]))
                deadline = time.time() + 20
                while big.counts()["items_list"] < lists + 2:
                    assert time.time() < deadline, m.log()
                    time.sleep(0.1)
                time.sleep(0.3)
            st = m.cache_stats()
            assert st["disk_used"] + st["listings_bytes"] <= 20 << 20
            assert "ENOSPC" not in m.log() and "full" not in m.log(), \
                m.log()
            assert m.stop() == 0
    finally:
        subprocess.run(["umount", "-l", cache])


def damage(db, keep_first=1):
    """Overwrite every other page inside a database, its header page
    intact."""
    size = os.path.getsize(db)
    with open(db, "r+b") as f:
        # the page size, from the header: two bytes at 16, 1 for 65536
        f.seek(16)
        page = int.from_bytes(f.read(2), "big")
        page = 65536 if page == 1 else page
        for at in range(keep_first * page, size, page * 2):
            f.seek(at)
            f.write(b"\xa5" * page)


def names(m):
    return sorted(os.listdir(m.p("acme", "cars", "items")))


def test_a_database_damaged_inside_heals(cars, mount_factory, tmpdir_short):
    truth = cars.truth(DS)["items"]
    want = sorted(t["key"] for t in truth)
    cache = new_cache(tmpdir_short)
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
    assert names(m) == want
    assert m.stop() == 0
    (db,) = glob.glob(os.path.join(cache, "listings", "*.db"))
    damage(db)
    for attempt in range(2):
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                          "ttl=3600")
        got, deadline = None, time.time() + 20
        while got != want:
            try:
                got = names(m)
            except OSError:
                got = None
            assert time.time() < deadline, (got, m.log())
            time.sleep(0.1)
        # listed again; the bad copy is gone once the new one is complete
        deadline = time.time() + 20
        while glob.glob(os.path.join(cache, "listings", "*.bad")):
            assert time.time() < deadline
            time.sleep(0.1)
        assert read_checked(m, truth) == []
        assert m.stop() == 0
        if attempt == 0:
            assert "set aside" in m.log()
    assert len(glob.glob(os.path.join(cache, "listings", "*.db"))) == 1


def test_a_database_damaged_while_mounted_heals(fake_factory, mount_factory,
                                                tmpdir_short):
    # the objects' JSON far larger than the pages readers keep in memory,
    # so that what is read after the damage comes from the file
    cars = fake_factory("--dataset", DS + ":items=300,meta_pad=20000,"
                        "min_size=3000,max_size=30000")
    truth = cars.truth(DS)["items"]
    want = sorted(t["key"] for t in truth)
    cache = new_cache(tmpdir_short)
    m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "ttl=3600")
    assert names(m) == want
    (db,) = glob.glob(os.path.join(cache, "listings", "*.db"))
    damage(db)
    items = m.p("acme", "cars", "items")

    def everything():
        """Names, and each item as listed: the objects' pages, which no
        reader read before the damage."""
        if names(m) != want:
            return False
        for t in truth:
            with open(os.path.join(items, t["key"], "metadata.json")) as f:
                if json.load(f)["uid"] != t["uid"]:
                    return False
        return True

    ok, deadline = False, time.time() + 30
    while not ok:
        try:
            ok = everything()
        except (OSError, ValueError):
            ok = False
        assert time.time() < deadline, m.log()
        time.sleep(0.2)
    assert "set aside" in m.log()
    assert cars.counts()["items_list"] >= 2
    assert read_checked(m, truth) == []
    assert m.alive()


def test_two_mounts_sharing_a_damaged_database_both_heal(
        fake_factory, mount_factory, tmpdir_short):
    cars = fake_factory("--dataset", DS + ":items=300,meta_pad=20000,"
                        "min_size=3000,max_size=30000")
    truth = cars.truth(DS)["items"]
    want = sorted(t["key"] for t in truth)
    cache = new_cache(tmpdir_short)
    a = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "ttl=3600")
    b = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache,
                      "ttl=3600")
    assert names(a) == want and names(b) == want
    (db,) = glob.glob(os.path.join(cache, "listings", "*.db"))
    damage(db)

    def whole(m):
        items = m.p("acme", "cars", "items")
        if names(m) != want:
            return False
        for t in truth:
            with open(os.path.join(items, t["key"], "metadata.json")) as f:
                if json.load(f)["uid"] != t["uid"]:
                    return False
        return True

    for m in (a, b, a, b):
        ok, deadline = False, time.time() + 30
        while not ok:
            try:
                ok = whole(m)
            except (OSError, ValueError):
                ok = False
            assert time.time() < deadline, a.log() + b.log()
            time.sleep(0.2)
    # one database again, the damaged one set aside at most once
    assert len(glob.glob(os.path.join(cache, "listings", "*.db"))) == 1
    assert len(glob.glob(os.path.join(cache, "listings", "*.bad"))) <= 1
    assert a.alive() and b.alive()


def fnv_name(origin, owner, slug):
    """The file name the store of a dataset has: FNV-1a of its origin,
    owner and slug, each with its NUL."""
    h = 0xcbf29ce484222325
    for part in (origin, owner, slug):
        for c in part.encode() + b"\0":
            h = ((h ^ c) * 0x100000001b3) & (2 ** 64 - 1)
    return "%016x.db" % h


def test_an_ordinary_user_sets_aside_what_root_planted(cars, tmpdir_short,
                                                       fuse_for_all):
    os.chmod(tmpdir_short, 0o755)
    home = os.path.join(tmpdir_short, "home")
    os.mkdir(home, 0o755)
    plant(home)
    cache = os.path.join(home, "cache")
    listings = os.path.join(cache, "listings")
    os.makedirs(listings)
    for d in (cache, listings):
        plant(d)
        os.chmod(d, 0o700)
    # root's files where the listing goes: not the user's to read or use
    name = fnv_name(cars.api_url, "acme", "cars")
    for suffix in ("", "-wal", "-shm"):
        with open(os.path.join(listings, name + suffix), "w") as f:
            f.write("planted")
        os.chmod(os.path.join(listings, name + suffix), 0o600)
    p, mnt = start(cache, cars, home, "dataset=" + DS, user=OTHER)
    try:
        assert mounted(mnt), p.stderr.read().decode()
        out = subprocess.run(["setpriv", "--reuid=%d" % OTHER,
                              "--regid=%d" % OTHER, "--clear-groups",
                              "ls", os.path.join(mnt, "acme", "cars",
                                                 "items")],
                             capture_output=True, check=True)
        assert len(out.stdout.split()) == 30
        st = os.stat(os.path.join(listings, name))
        assert st.st_uid == OTHER and stat.S_IMODE(st.st_mode) == 0o600
    finally:
        unmount(mnt)
        p.wait(10)
    assert p.returncode == 0


def test_a_listing_larger_than_the_cache_is_kept_in_memory(fake_factory,
                                                           mount_factory,
                                                           tmpdir_short):
    # 300 items of 100 KB of metadata each: a 30 MB listing, 1 MB allowed
    fake = fake_factory("--dataset", DS + ":items=300,meta_pad=100000")
    cache = new_cache(tmpdir_short)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "disk_cache_size=1M")
    assert len(names(m)) == 300
    with open(os.path.join(m.p("acme", "cars", "items"), names(m)[7],
                           "metadata.json"), "rb") as f:
        assert len(f.read()) > 100000
    assert "kept in memory" in m.log()
    used = sum(os.lstat(p).st_blocks * 512 for p in
               glob.glob(os.path.join(cache, "listings", "*")))
    assert used <= 2 << 20, used
    assert m.stop() == 0


def test_a_data_cache_that_cannot_write_says_so(cars, mount_factory,
                                                tmpdir_short):
    truth = cars.truth(DS)["items"]
    cache = new_cache(tmpdir_short)
    tmp = os.path.join(cache, "data", "tmp")
    os.makedirs(tmp, 0o700)
    subprocess.run(["mount", "--bind", tmp, tmp], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", tmp], check=True)
    try:
        m = mount_factory(cars, "dataset=" + DS, "cache_dir=" + cache)
        assert read_checked(m, truth) == []
        m.wait_idle()
        st = m.cache_stats()
        assert st["disk_writing"] is False and st["disk_write_errors"] > 0
        lines = [l for l in m.log().splitlines() if "cannot write" in l]
        assert len(lines) == 1, m.log()
        assert m.stop() == 0
    finally:
        subprocess.run(["umount", "-l", tmp])
