# The command line as a user and mount(8) see it: GNU --help and --version,
# usage errors, the man page, and fstab mounts through mount.fuse3.
import glob
import os
import re
import subprocess
import tempfile
import time

import pytest

from conftest import BINARY, KEY, ROOT, escape_key

MAN = os.path.join(ROOT, "packaging", "avalafs.1")
HELPER_LINK = "/usr/local/bin/avalafs"


def run(*args, **kw):
    return subprocess.run([BINARY] + list(args), capture_output=True,
                          text=True, timeout=60, **kw)


def project_version():
    text = open(os.path.join(ROOT, "meson.build")).read()
    return re.search(r"^\s*version: '([^']+)'", text, re.M).group(1)


def help_options():
    """The -o option names that --help lists."""
    out = run("--help").stdout
    return sorted(set(re.findall(r"-o ([a-z_]+)", out)))


def table_options():
    """(-o NAME=VALUE options, fstab-only words) of main.c's option table."""
    src = open(os.path.join(ROOT, "src", "main.c")).read()
    named = set(re.findall(r'(?:OPT|FUSE_OPT_KEY)\("([a-z_]+)=', src))
    ignored = re.findall(r'FUSE_OPT_KEY\("([a-z_]+)", FUSE_OPT_KEY_DISCARD',
                         src)
    return sorted(named), ignored


def test_version_is_gnu_style():
    r = run("--version")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "avalafs " + project_version()
    assert any(l.startswith("Copyright (C) ") for l in lines)
    assert "There is NO WARRANTY, to the extent permitted by law." in lines
    assert run("-V").stdout == r.stdout


def test_help_is_gnu_style():
    r = run("--help")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: avalafs [OPTION]... MOUNTPOINT\n")
    for flag in ("-f", "-d", "-s", "-h, --help", "-V, --version"):
        assert "\n  " + flag in r.stdout
    assert run("-h").stdout == r.stdout
    # every option of main.c's table is listed, and FUSE's allow_other
    named, _ = table_options()
    assert len(named) >= 13
    assert help_options() == sorted(named + ["allow_other"])


@pytest.mark.parametrize("args,message", [
    (["-o", "no_such_option,api_url=API", "/tmp"], "unknown option"),
    (["-o", "api_url=API", "--no-such-flag", "/tmp"], "unknown option"),
    (["-o", "api_url=API", "-o"], "missing argument"),
    (["-o", "api_url=API"], "missing mount point"),
])
def test_usage_errors_point_to_help(args, message, fake_factory):
    fake = fake_factory("--dataset", "acme/cars:items=1")
    env = dict(os.environ, AVALA_API_KEY=KEY)
    r = run(*[a.replace("API", fake.api_url) for a in args], env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert message in r.stderr
    assert r.stderr.endswith("Try 'avalafs --help' for more information.\n")
    # refused before any request was made
    counts = fake.counts()
    del counts["connections"]  # our own control connection
    assert sum(counts.values()) == 0, counts


def test_man_page_covers_every_option():
    text = open(MAN).read()
    th = re.search(r'^\.TH AVALAFS 1 "[^"]+" "avalafs ([^"]+)"', text, re.M)
    assert th and th.group(1) == project_version()
    for name in help_options():
        assert re.search(r"\\-o %s\b" % name, text), name
    for section in ("SYNOPSIS", "OPTIONS", "THE TREE", "NAMES", "ERRORS",
                    "EXIT STATUS", "ENVIRONMENT", "FSTAB", "SYSTEMD",
                    "EXAMPLES"):
        assert re.search(r"^\.SH %s$" % section, text, re.M), section
    # the fstab-only words, all on the line that says they are ignored
    _, ignored = table_options()
    assert {"_netdev", "nofail", "auto", "noauto", "user"} <= set(ignored)
    line = re.search(r"^\.BR _netdev .*$", text, re.M)
    assert line and all(
        re.search(r'(^\.BR |" )%s( "|$)' % w, line.group(0))
        for w in ignored), ignored


def test_man_page_renders_without_warnings():
    if not os.path.exists("/usr/bin/groff"):
        pytest.skip("groff is not installed")
    r = subprocess.run(["groff", "-man", "-ww", "-z", MAN],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""


# mount(8) runs mount.fuse3, which runs "avalafs" through /bin/sh with the
# shell's default PATH: the binary under test must be in /usr/local/bin.
@pytest.fixture
def installed():
    if os.geteuid() != 0:
        pytest.skip("mount(8) of a FUSE type needs root")
    target = os.path.realpath(BINARY)
    if os.path.lexists(HELPER_LINK):
        if os.path.realpath(HELPER_LINK) == target:
            yield
            return
        # a link left by a run that was killed may be replaced: one that
        # leads nowhere or to the binary of a build directory
        old = os.readlink(HELPER_LINK) if os.path.islink(HELPER_LINK) else ""
        if not old or (os.path.exists(HELPER_LINK) and not re.search(
                r"/build[^/]*/avalafs$", old)):
            pytest.skip(HELPER_LINK + " is another avalafs")
    tmp = HELPER_LINK + ".test-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, HELPER_LINK)
    try:
        yield
    finally:
        if os.path.realpath(HELPER_LINK) == target:
            os.unlink(HELPER_LINK)


def daemons_on(mnt):
    """Pids of avalafs processes serving mnt."""
    pids = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            argv = open(d + "/cmdline", "rb").read().split(b"\0")
            exe = os.readlink(d + "/exe")
        except OSError:
            continue
        if mnt.encode() in argv and exe == os.path.realpath(BINARY):
            pids.append(int(d[6:]))
    return pids


def mount_type(mnt):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == mnt:
            return f[f.index("-") + 1], f[5]
    return None, None


def umount_and_wait(mnt):
    subprocess.run(["umount", mnt], check=True, timeout=30)
    deadline = time.time() + 15
    while daemons_on(mnt):
        assert time.time() < deadline, "avalafs did not exit after umount"
        time.sleep(0.05)


@pytest.fixture
def key_file(tmpdir_short):
    path = os.path.join(tmpdir_short, "key")
    with open(path, "w") as f:
        f.write(KEY + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.mark.fuse
def test_fstab_line_mounts_with_mount(fake_factory, tmpdir_short, key_file,
                                      installed):
    fake = fake_factory("--dataset", "acme/cars:items=4")
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    fstab = os.path.join(tmpdir_short, "fstab")
    with open(fstab, "w") as f:
        f.write("avalafs %s fuse.avalafs ro,_netdev,nofail,noauto,user,"
                "api_key_file=%s,dataset=acme/cars,api_url=%s,cache_dir=%s"
                " 0 0\n" % (mnt, key_file, fake.api_url,
                             os.path.join(tmpdir_short, "cache")))
    r = subprocess.run(["mount", "--fstab", fstab, mnt], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        fstype, options = mount_type(mnt)
        assert fstype == "fuse.avalafs" and options.split(",")[0] == "ro"
        assert len(daemons_on(mnt)) == 1
        truth = fake.truth("acme/cars")["items"]
        items = os.path.join(mnt, "acme", "cars", "items")
        assert sorted(os.listdir(items)) == sorted(
            escape_key(i["key"].encode()).decode() for i in truth)
        first = truth[0]
        data, = glob.glob(os.path.join(
            items, escape_key(first["key"].encode()).decode(), "data*"))
        with open(data, "rb") as f:
            assert f.read() == fake.file_bytes("acme/cars", first["uid"])
    finally:
        umount_and_wait(mnt)
    assert not os.path.ismount(mnt)


@pytest.mark.fuse
def test_mount_t_reports_a_rejected_key(fake_factory, tmpdir_short, installed):
    fake = fake_factory("--dataset", "acme/cars:items=1")
    bad = os.path.join(tmpdir_short, "bad-key")
    with open(bad, "w") as f:
        f.write("not-the-key\n")
    os.chmod(bad, 0o600)
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    r = subprocess.run(
        ["mount", "-t", "fuse.avalafs", "-o",
         "ro,_netdev,api_key_file=%s,dataset=acme/cars,api_url=%s"
         % (bad, fake.api_url), "avalafs", mnt],
        capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "avalafs:" in r.stderr and "not-the-key" not in r.stderr
    assert not os.path.ismount(mnt) and not daemons_on(mnt)
