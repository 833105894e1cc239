# Start-up checks and run-time errors (DESIGN sections 4 and 5): the right
# exit code and message, the right errno, and a mount that stays up.
import errno
import os
import subprocess
import time

import pytest

from conftest import BINARY, KEY


def run_avalafs(fake, tmp, options, key=KEY, extra_env=None):
    mnt = os.path.join(tmp, "mnt-startup")
    os.makedirs(mnt, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AVALA_API_KEY", "AVALA_BASE_URL")}
    if key is not None:
        env["AVALA_API_KEY"] = key
    env.update(extra_env or {})
    opts = ",".join(["api_url=" + fake.api_url,
                     "cache_dir=" + os.path.join(tmp, "cache")] + options)
    # without -f: the checks must finish before the process detaches
    r = subprocess.run([BINARY, "-o", opts, mnt], env=env, timeout=60,
                       capture_output=True)
    mounted = os.path.ismount(mnt)
    if mounted:
        subprocess.run(["fusermount3", "-u", "-z", mnt])
    return r, mounted


@pytest.mark.parametrize("case,options,key,cause", [
    ("no key", ["dataset=acme/cars"], None, "no API key"),
    ("wrong key", ["dataset=acme/cars"], "wrong", "API key was rejected"),
    ("unknown dataset", ["dataset=acme/nope"], KEY, "not found"),
    ("forbidden dataset", ["dataset=acme/secret"], KEY, "permission denied"),
    ("bad dataset option", ["dataset=acme"], KEY, "OWNER/SLUG"),
    ("bad page size", ["dataset=acme/cars", "page_size=5000"], KEY,
     "page_size"),
])
def test_startup_refusals(fake_factory, tmpdir_short, case, options, key,
                          cause):
    fake = fake_factory("--dataset", "acme/cars:items=2",
                        "--dataset", "acme/secret:items=2",
                        "--forbid", "acme/secret")
    r, mounted = run_avalafs(fake, tmpdir_short, options, key=key)
    err = r.stderr.decode()
    assert r.returncode != 0, case
    assert not mounted, case
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert cause in lines[0], err
    if key:
        assert key not in err


@pytest.mark.fuse
def test_key_file(fake_factory, tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    key_file = os.path.join(tmpdir_short, "key")
    with open(key_file, "w") as f:
        f.write(KEY + "\n")
    os.chmod(key_file, 0o600)
    r, mounted = run_avalafs(fake, tmpdir_short,
                             ["dataset=acme/cars", "api_key_file=" + key_file],
                             key=None)
    assert r.returncode == 0, r.stderr
    assert mounted


def test_unreachable_api(fake_factory, tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    fake.stop()
    r, mounted = run_avalafs(fake, tmpdir_short,
                             ["dataset=acme/cars", "timeout=2"])
    assert r.returncode != 0 and not mounted
    assert "cannot reach the API" in r.stderr.decode()


def data_path(m, items, name):
    d = os.path.join(items, name)
    return os.path.join(d, [n for n in os.listdir(d)
                            if n.startswith("data")][0])


def test_item_gone_gives_enoent(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=4,size_known=1")
    m = mount_factory(fake, "dataset=acme/cars", "ttl=1")
    truth = fake.truth("acme/cars")["items"]
    items = m.p("acme", "cars", "items")
    gone = truth[0]
    # no byte of it fetched yet: its size comes from metadata.size
    path = os.path.join(items, gone["key"],
                        "data" + os.path.splitext(gone["key"])[1])
    assert os.stat(path).st_size == gone["files"]["data"]["size"]
    assert fake.counts()["file"] == 0
    fake.delete("acme/cars", gone["uid"])
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read()
    assert e.value.errno == errno.ENOENT
    time.sleep(1.2)
    assert gone["key"] not in os.listdir(items)
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(items, gone["key"]))
    assert m.alive()
    other = truth[1]
    with open(data_path(m, items, other["key"]), "rb") as f:
        assert len(f.read()) == other["files"]["data"]["size"]


@pytest.mark.slow
def test_rejected_key_gives_eacces(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=4")
    m = mount_factory(fake, "dataset=acme/cars", "ttl=1")
    items = m.p("acme", "cars", "items")
    assert len(os.listdir(items)) == 4
    fake.set_key("rotated")
    time.sleep(1.2)
    # the first look after ttl is answered from the last listing and
    # starts the next; once the server refuses it, nothing is shown
    deadline = time.time() + 10
    while True:
        try:
            os.listdir(items)
        except PermissionError as e:
            assert e.errno == errno.EACCES
            break
        assert time.time() < deadline
        time.sleep(0.2)
    assert m.alive()
    fake.set_key(KEY)
    time.sleep(1.2)
    deadline = time.time() + 10
    while True:
        try:
            assert len(os.listdir(items)) == 4
            break
        except PermissionError:
            assert time.time() < deadline
            time.sleep(0.2)
    # one log line for the cause, however many requests met it
    assert m.log().count("HTTP 401") == 1, m.log()


@pytest.mark.parametrize("action", ["touch", "mkdir", "rm", "echo", "mv"])
def test_writes_are_erofs(fake_factory, mount_factory, action):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    m = mount_factory(fake, "dataset=acme/cars")
    items = m.p("acme", "cars", "items")
    item = os.path.join(items, sorted(os.listdir(items))[0])
    meta = os.path.join(item, "metadata.json")
    before = open(meta, "rb").read()
    with pytest.raises(OSError) as e:
        if action == "touch":
            open(os.path.join(item, "new"), "w").close()
        elif action == "mkdir":
            os.mkdir(os.path.join(items, "new"))
        elif action == "rm":
            os.unlink(meta)
        elif action == "echo":
            with open(meta, "w") as f:
                f.write("x\n")
        elif action == "mv":
            os.rename(meta, os.path.join(item, "moved.json"))
    assert e.value.errno == errno.EROFS
    r = subprocess.run(["touch", meta], capture_output=True)
    assert r.returncode != 0 and b"Read-only" in r.stderr
    assert m.alive()
    assert open(meta, "rb").read() == before
