# The command line as a user and mount(8) see it: GNU --help and --version,
# usage errors, the man page and README against --help, start-up refusals
# (words, mount points, key files, the API's answers) with their exit status,
# time and words, and fstab mounts through mount.fuse3.
import glob
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import BINARY, KEY, ROOT, Mount, escape_key, unmount

MAN = os.path.join(ROOT, "packaging", "avalafs.1")
README = os.path.join(ROOT, "README.md")
HELPER_LINK = "/usr/local/bin/avalafs"
TRY_HELP = "Try 'avalafs --help' for more information.\n"


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
    """(options --help lists, fstab-only words) of options.c's table."""
    src = open(os.path.join(ROOT, "src", "options.c")).read()
    named = [m.group(1) for m in re.finditer(
        r'\{ "([a-z_]+)", OPT_\w+(.*?)\},', src, re.S)
        if ".help =" in m.group(2)]
    ignored = re.findall(r'IGNORED\("([a-z_]+)"\)', src)
    return sorted(named), ignored


def help_entries():
    """{NAME: (range or None, default or None)} of --help's -o lines."""
    text = {}
    name = None
    for line in run("--help").stdout.splitlines():
        m = re.match(r"  -o ([a-z_]+)\S*\s+(.*)$", line)
        if m:
            name = m.group(1)
            text[name] = m.group(2)
        elif name and line.startswith(" " * 28):
            text[name] += " " + line.strip()
        else:
            name = None
    out = {}
    for name, t in text.items():
        rng = re.search(r"\((\S+ to \S+)[;)]", t)
        dflt = re.search(r"default: (.*)\)$", t)
        out[name] = (rng and rng.group(1), dflt and dflt.group(1))
    return out


def run_timed(args, env=None, cwd=None):
    """(result, seconds) of avalafs @args, without -f unless given."""
    start = time.monotonic()
    r = subprocess.run([BINARY] + args, capture_output=True, text=True,
                       timeout=60, env=env, cwd=cwd)
    return r, time.monotonic() - start


def key_env(key=KEY):
    env = {k: v for k, v in os.environ.items()
           if k not in ("AVALA_API_KEY", "AVALA_BASE_URL")}
    if key is not None:
        env["AVALA_API_KEY"] = key
    return env


def mountinfo_count(path):
    """How many mounts sit on @path."""
    real = os.path.realpath(path)
    return sum(1 for line in open("/proc/self/mountinfo")
               if line.split()[4] == real)


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
    # every option of options.c's table that has help is listed
    named, _ = table_options()
    assert len(named) >= 19
    assert help_options() == named


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


def test_docs_agree_with_help():
    """README's table and the man page give --help's ranges and defaults,
    and all three the same ignored fstab words."""
    entries = help_entries()
    assert entries["page_size"] == ("1 to 1000", "100")
    assert entries["ttl"] == ("0 to 30d", "1m")
    readme = open(README).read()
    man = open(MAN).read()
    chunks = man.split("\n.TP\n")
    for name, (rng, dflt) in entries.items():
        row = [l for l in readme.splitlines()
               if re.match(r"\| `%s[=`]" % name, l)]
        assert len(row) == 1, name
        cells = [c.strip().replace("`", "") for c in row[0].split("|")[1:-1]]
        assert cells[1] == (dflt or ""), (name, cells[1], dflt)
        assert cells[2] == (rng or ""), (name, cells[2], rng)
        entry = [c for c in chunks
                 if re.search(r'^\.BI? "?\\-o %s\b' % name, c)
                 or re.search(r'^\.BI "\\-o \w+=" \w+ ", \\-o %s=' % name, c)]
        assert len(entry) == 1, name
        if rng:
            assert "\nRange: %s.\n" % rng in entry[0] + "\n", name
        if dflt and re.match(r"^\d+[KMGTsmhd]?$", dflt):
            assert "\nDefault: %s.\n" % dflt in entry[0] + "\n", name
    _, ignored = table_options()
    line = [l for l in run("--help").stdout.replace("\n", " ").split(". ")
            if l.startswith("Accepted and ignored")][0]
    assert [w for w in re.findall(r"[_a-z]+", line.split(":", 1)[1])
            if w != "and"] == ignored
    said = re.search(r"((?:`[_a-z]+`(?:, | and ))+`[_a-z]+`) are accepted "
                     r"and ignored", readme.replace("\n", " "))
    assert said and re.findall(r"`([_a-z]+)`", said.group(1)) == ignored


@pytest.mark.parametrize("args,lines", [
    (["dataset=acme/cars", "MNT"],
     ["avalafs: dataset=acme/cars: unexpected word (did you mean "
      "-o dataset=acme/cars?)", TRY_HELP.strip()]),
    (["-o", "api_url=@URL,dataset=acme/cars", "OTHER", "MNT"],
     ["avalafs: OTHER and MNT: two mount points; give one",
      TRY_HELP.strip()]),
    (["-o", "api_url=@URL", "acme/cars", "MNT"],
     ["avalafs: acme/cars: unexpected word (the mount point is MNT)",
      TRY_HELP.strip()]),
    (["-o", "api_url=@URL,dataset=acme/cars", "FILE"],
     ["avalafs: FILE: not a folder: the mount point must be one"]),
    (["-o", "api_url=@URL,dataset=acme/cars", "MNT/nope"],
     ["avalafs: MNT/nope: no such folder (make it with mkdir -p "
      "MNT/nope)"]),
    (["-o", "api_url=@URL,dataset=acme/cars,api_key=SECRET", "MNT"],
     ["avalafs: api_key: the key is never taken on the command line, where "
      "ps shows it: use -o api_key_file=PATH or AVALA_API_KEY"]),
    (["-o", "api_url=@URL,timeout=1m,ttl=1h,prefetch=1000", "MNT"],
     ["avalafs: prefetch=1000: expected a number from 0 to 64"]),
])
def test_start_refuses_words_and_mount_points(args, lines, fake_factory,
                                              tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=1")
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    other = tempfile.mkdtemp(prefix="other-", dir=tmpdir_short)
    path = os.path.join(tmpdir_short, "file")
    open(path, "w").close()

    def fill(a):
        return a.replace("@URL", fake.api_url).replace("MNT", mnt) \
            .replace("OTHER", other).replace("FILE", path)
    r, took = run_timed([fill(a) for a in args], env=key_env())
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [fill(l) for l in lines]
    assert "SECRET" not in r.stderr
    assert took < 5
    assert not os.path.ismount(mnt)
    # refused before any request was made
    counts = fake.counts()
    del counts["connections"]
    assert sum(counts.values()) == 0, counts


@pytest.mark.fuse
def test_start_refuses_a_live_mount_point(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    m = mount_factory(fake, "dataset=acme/cars")
    r, took = run_timed(["-o", "api_url=%s,dataset=acme/cars" % fake.api_url,
                         m.path], env=key_env())
    assert r.returncode == 1 and took < 5
    assert r.stderr == ("avalafs: %s is already a mount (fuse.avalafs): "
                        "unmount it first with fusermount3 -u %s\n"
                        % (m.path, m.path))
    assert mountinfo_count(m.path) == 1 and m.alive()
    assert len(os.listdir(m.p("acme", "cars", "items"))) == 2


@pytest.mark.fuse
def test_start_refuses_a_dead_mount_point(fake_factory, tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    m = Mount(fake, tmpdir_short, ["dataset=acme/cars"])
    try:
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(10)
        with pytest.raises(OSError):
            os.listdir(m.path)
        r, took = run_timed(["-o", "api_url=%s,dataset=acme/cars"
                             % fake.api_url, m.path], env=key_env())
        assert r.returncode == 1 and took < 5
        assert r.stderr == ("avalafs: %s: a mount whose process is gone "
                            "(Transport endpoint is not connected): clear it "
                            "with fusermount3 -u %s\n" % (m.path, m.path))
        assert mountinfo_count(m.path) == 1
    finally:
        unmount(m.path)
        m.stderr.close()
    assert not os.path.ismount(m.path)


@pytest.mark.fuse
def test_background_start_returns_once_serving(fake_factory, tmpdir_short):
    # max_read is FUSE's, and libfuse also wants it in the answer to INIT:
    # without it the mount failed after the shell was told it worked
    fake = fake_factory("--dataset", "acme/cars:items=3")
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    r, took = run_timed(["-o", "api_url=%s,dataset=acme/cars,max_read=4096,"
                         "cache_dir=none" % fake.api_url, mnt], env=key_env())
    try:
        assert r.returncode == 0, r.stderr
        assert r.stderr == "" and took < 10
        # serving the moment the command returns, not some time later
        assert os.path.ismount(mnt)
        assert len(os.listdir(os.path.join(mnt, "acme", "cars", "items"))) \
            == 3
    finally:
        unmount(mnt)


@pytest.mark.parametrize("options,fake_args,line", [
    ("dataset=acme/nope", [],
     "avalafs: dataset acme/nope: not found at URL (HTTP 404)"),
    ("dataset=acme/cars,ordering=bogus", [],
     "avalafs: ordering=bogus: refused by the API (HTTP 400): Invalid "
     "ordering: 'bogus'. Use one of key, -key, created_at, -created_at."),
    ("ordering=bogus", [],
     "avalafs: ordering=bogus: refused by the API (HTTP 400): Invalid "
     "ordering: 'bogus'. Use one of key, -key, created_at, -created_at."),
    ("cache_dir=none", ["--no-discovery"],
     "avalafs: no dataset list at URL (HTTP 404): check api_url, or name "
     "datasets with -o dataset=OWNER/SLUG"),
])
def test_background_start_failure_reaches_the_terminal(
        options, fake_factory, tmpdir_short, fake_args, line):
    fake = fake_factory("--dataset", "acme/cars:items=2", *fake_args)
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    r, took = run_timed(["-o", "api_url=%s,%s" % (fake.api_url, options),
                         mnt], env=key_env())
    assert r.returncode == 1 and took < 5
    assert r.stderr == line.replace("URL", fake.api_url) + "\n"
    assert not os.path.ismount(mnt)


@pytest.mark.parametrize("content,why", [
    (None, "it is a folder, not the file that holds the key"),
    ("\n" + KEY + "\n", "its first line is blank, and the key must be on it"),
    ("   \n", "its first line is blank, and the key must be on it"),
    ("", "it is empty"),
])
def test_start_names_what_is_wrong_with_the_key_file(
        content, why, fake_factory, tmpdir_short):
    fake = fake_factory("--dataset", "acme/cars:items=2")
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=tmpdir_short)
    path = os.path.join(tmpdir_short, "key")
    if content is None:
        os.mkdir(path)
    else:
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, 0o600)
    # a relative path: taken from the folder avalafs was started in
    r, took = run_timed(["-o", "api_url=%s,dataset=acme/cars,api_key_file=key"
                         % fake.api_url, mnt], env=key_env(None),
                        cwd=tmpdir_short)
    assert r.returncode == 1 and took < 5
    assert r.stderr == "avalafs: cannot use api_key_file %s: %s\n" % (
        path, why)
    assert KEY not in r.stderr
    counts = fake.counts()
    del counts["connections"]
    assert sum(counts.values()) == 0, counts


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


def test_systemd_hears_ready_once_it_serves(fake_factory, mount_factory,
                                            tmpdir_short):
    import socket
    fake = fake_factory("--dataset", "acme/cars:items=3")
    path = os.path.join(tmpdir_short, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        m = mount_factory(fake, "dataset=acme/cars",
                          env={"NOTIFY_SOCKET": path})
        said = []
        while not any("READY=1" in s for s in said):
            said.append(sock.recv(4096).decode())
        # what it was doing, then ready once the mount serves
        assert said[0].startswith("STATUS=Asking http://127.0.0.1:")
        assert "STATUS=Serving " + m.path in said[-1]
        assert os.listdir(m.p("acme", "cars", "items"))
        unmount(m.path)
        assert m.proc.wait(20) == 0
        assert "STOPPING=1" in sock.recv(4096).decode()
    finally:
        sock.close()
