# HTTPS (DESIGN section 4, "TLS is verified"): the fake and a local nginx
# serve with certificates made at test time, and avalafs trusts the test CA
# through ca_file=. Bytes are right over https for the API and the data; a
# certificate from another CA, an expired one or one for another host
# refuses the mount at start, quickly, with one line that says why; a
# ca_file that cannot be used refuses it too; a data URL whose certificate
# fails gives EIO at once with one log line; parallel readers share few
# connections and resume TLS sessions.
import errno
import os
import subprocess
import time

import pytest

from conftest import BINARY, KEY, read_all, sha256_file

DS = "acme/cars"


def data_paths(m, truth):
    """Each item's data file, by uid."""
    items = m.p("acme", "cars", "items")
    return {t["uid"]: os.path.join(items, t["key"], "data" +
                                   os.path.splitext(t["key"])[1])
            for t in truth}


def sessions(web, what):
    """nginx's connections that made a request, {serial: resumed}; those
    after the first 8 (one per reader); how many of those resumed a TLS
    session. Prints the numbers."""
    conns = web.connections()
    later = sorted(conns, key=int)[8:]
    resumed = sum(conns[c] for c in later)
    print("%s: %d requests, %d connections, %d resumed a TLS session; "
          "after the first 8: %d of %d" % (
              what, len(web.requests()), len(conns), sum(conns.values()),
              resumed, len(later)))
    return conns, later, resumed


def run_avalafs(fake, tmp, options):
    """Mount in the background as a user would, with dataset acme/cars;
    returns (the finished process, seconds it took, whether it mounted)."""
    mnt = os.path.join(tmp, "mnt-startup")
    os.makedirs(mnt, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AVALA_API_KEY", "AVALA_BASE_URL")}
    env["AVALA_API_KEY"] = KEY
    opts = ",".join(["api_url=" + fake.api_url, "dataset=" + DS,
                     "cache_dir=" + os.path.join(tmp, "cache")] + options)
    start = time.monotonic()
    r = subprocess.run([BINARY, "-o", opts, mnt], env=env, timeout=60,
                       capture_output=True)
    took = time.monotonic() - start
    mounted = os.path.ismount(mnt)
    if mounted:
        subprocess.run(["fusermount3", "-u", "-z", mnt])
    return r, took, mounted


def one_line(r):
    """The one line a refused mount prints."""
    err = r.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.fuse
def test_bytes_over_https(tls_fake_factory, mount_factory, pki):
    fake = tls_fake_factory("--dataset", DS + ":items=40,sequences=2,"
                            "size_known=0.5")
    assert fake.api_url.startswith("https://127.0.0.1:")
    m = mount_factory(fake, "ca_file=" + pki.ca, "dataset=" + DS)
    truth = fake.truth(DS)
    assert all(t["files"]["data"]["url"].startswith("https://")
               for t in truth["items"])
    assert read_all(data_paths(m, truth["items"]), truth["items"]) == []
    for s in truth["sequences"]:
        d = m.p("acme", "cars", "sequences", s["key"])
        featured = [n for n in os.listdir(d) if n.startswith("featured")]
        assert len(featured) == 1
        assert sha256_file(os.path.join(d, featured[0])) == \
            s["files"]["featured"]["sha256"]
    counts = fake.counts()
    assert counts["items_list"] >= 1 and counts["file"] >= 40


@pytest.mark.fuse
def test_bytes_over_https_from_nginx(tls_fake_factory, nginx_factory,
                                     mount_factory, pki, tmpdir_short):
    root = os.path.join(tmpdir_short, "files")
    os.mkdir(root)
    web = nginx_factory(root)
    fake = tls_fake_factory("--dataset", DS + ":items=30,size_known=0,"
                            "data_base=%s,files_dir=%s" % (web.url, root))
    m = mount_factory(fake, "ca_file=" + pki.ca, "dataset=" + DS,
                      "cache_dir=none")
    truth = fake.truth(DS)["items"]
    assert read_all(data_paths(m, truth), truth) == []
    served = [r for r in web.requests() if r[2] in ("200", "206")]
    assert len(served) >= 30
    assert fake.counts()["file"] == 0


# what OpenSSL and curl say for each, in a few words that stay
REFUSALS = {
    "other": ("issuer", "self-signed", "self signed", "not trusted",
              "untrusted"),
    "expired": ("expired",),
    "wrong_host": ("match", "host name", "hostname"),
}


@pytest.mark.fuse
@pytest.mark.parametrize("which", ["other", "expired", "wrong_host",
                                   "system store"])
def test_untrusted_api_certificate_refuses_the_mount(
        tls_fake_factory, tmpdir_short, pki, which):
    cert = pki.server if which == "system store" else getattr(pki, which)
    fake = tls_fake_factory("--dataset", DS + ":items=2", cert=cert)
    # the system store knows nothing of the test CA
    options = [] if which == "system store" else ["ca_file=" + pki.ca]
    r, took, mounted = run_avalafs(fake, tmpdir_short, options)
    print("%s: exit %d after %.2f s: %s" % (
        which, r.returncode, took, r.stderr.decode(errors="replace")))
    assert r.returncode != 0 and not mounted
    assert took < 10
    line = one_line(r)
    assert "127.0.0.1:%d" % fake.port in line
    assert "certificate" in line.lower()
    words = REFUSALS.get(which, REFUSALS["other"])
    assert any(w in line.lower() for w in words), line
    if which == "wrong_host":
        assert "DNS:wrong.example" in line, line  # the names it is for
    else:
        assert "issued by" in line, line  # which certificate
    assert fake.counts()["items_list"] == 0


@pytest.mark.fuse
@pytest.mark.parametrize("case", ["missing", "directory", "unreadable",
                                  "empty", "no certificate", "key only"])
def test_unusable_ca_file_refuses_the_mount(tls_fake_factory, tmpdir_short,
                                            pki, case):
    fake = tls_fake_factory("--dataset", DS + ":items=2")
    path = os.path.join(tmpdir_short, "ca-" + case.replace(" ", "-"))
    if case == "directory":
        os.mkdir(path)
    elif case == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads a file of mode 000")
        with open(pki.ca, "rb") as src, open(path, "wb") as f:
            f.write(src.read())
        os.chmod(path, 0)
    elif case == "key only":
        path = pki.server.key
    elif case != "missing":
        with open(path, "w") as f:
            f.write("" if case == "empty" else "not a certificate\n")
    r, took, mounted = run_avalafs(fake, tmpdir_short, ["ca_file=" + path])
    print("%s: exit %d after %.2f s: %s" % (
        case, r.returncode, took, r.stderr.decode(errors="replace")))
    assert r.returncode != 0 and not mounted
    assert took < 10
    line = one_line(r)
    assert "ca_file=" + path in line and "unknown option" not in line


@pytest.mark.fuse
def test_data_url_with_untrusted_certificate_is_eio(
        tls_fake_factory, nginx_factory, mount_factory, pki, tmpdir_short):
    root = os.path.join(tmpdir_short, "files")
    os.mkdir(root)
    web = nginx_factory(root, cert=pki.other)
    fake = tls_fake_factory("--dataset", DS + ":items=12,size_known=1,"
                            "data_base=%s,files_dir=%s" % (web.url, root))
    # one URL signed as a store's would be: its query never reaches a log
    first = fake.truth(DS)["items"][0]
    fake.call("/_fake/data_url", {
        "dataset": DS, "uid": first["uid"],
        "url": "%s/%s%s?X-Amz-Signature=s3cr3t" % (
            web.url, first["uid"], os.path.splitext(first["key"])[1])})
    m = mount_factory(fake, "ca_file=" + pki.ca, "dataset=" + DS)
    truth = fake.truth(DS)["items"]
    assert "s3cr3t" in truth[0]["object"]["data_url"]
    paths = data_paths(m, truth)
    start = time.monotonic()
    for uid in list(paths)[:5]:
        with pytest.raises(OSError) as e:
            with open(paths[uid], "rb") as f:
                got = f.read()
                pytest.fail("%d bytes read from %s" % (len(got), uid))
        assert e.value.errno == errno.EIO, e.value
    took = time.monotonic() - start
    print("5 reads failed in %.2f s" % took)
    assert took < 10
    # the thumbnails, on the fake, still read
    t = truth[0]
    d = os.path.dirname(paths[t["uid"]])
    thumb = [n for n in os.listdir(d) if n.startswith("thumbnail")]
    assert sha256_file(os.path.join(d, thumb[0])) == \
        t["files"]["thumbnail"]["sha256"]
    assert web.requests() == []
    host = "127.0.0.1:%d" % web.port
    lines = [l for l in m.log().splitlines() if host in l]
    print("\n".join(lines))
    assert len(lines) == 1, m.log()
    assert "certificate" in lines[0].lower()
    assert "s3cr3t" not in m.log()
    assert m.alive()


@pytest.mark.fuse
def test_parallel_readers_share_connections_and_sessions(
        tls_fake_factory, nginx_factory, mount_factory, pki, tmpdir_short):
    root = os.path.join(tmpdir_short, "files")
    os.mkdir(root)
    web = nginx_factory(root)
    fake = tls_fake_factory("--dataset", DS + ":items=200,size_known=1,"
                            "min_size=1000,max_size=8000,"
                            "data_base=%s,files_dir=%s" % (web.url, root))
    m = mount_factory(fake, "ca_file=" + pki.ca, "dataset=" + DS,
                      "cache_dir=none")
    truth = fake.truth(DS)["items"]
    paths = data_paths(m, truth)
    # 8 readers, one file a process, in listing order, as a user would
    names = [paths[t["uid"]] for t in truth]
    r = subprocess.run(["xargs", "-0", "-P8", "-n1", "sha256sum"],
                       input="\0".join(names).encode(), capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.decode().splitlines():
        digest, name = line.split("  ", 1)
        got[name] = digest
    assert got == {paths[t["uid"]]: t["files"]["data"]["sha256"]
                   for t in truth}
    conns, later, resumed = sessions(web, "200 files")
    assert len(conns) <= 64
    # the first connections open at once, before any session exists
    assert resumed * 2 > len(later) or not later


@pytest.mark.fuse
def test_new_connections_resume_tls_sessions(
        tls_fake_factory, nginx_factory, mount_factory, pki, tmpdir_short):
    # nginx closes every connection after 4 requests, so avalafs must open
    # new ones while it reads: after the first few, each resumes a session
    root = os.path.join(tmpdir_short, "files")
    os.mkdir(root)
    web = nginx_factory(root, keepalive_requests=4)
    fake = tls_fake_factory("--dataset", DS + ":items=120,size_known=1,"
                            "min_size=1000,max_size=8000,"
                            "data_base=%s,files_dir=%s" % (web.url, root))
    m = mount_factory(fake, "ca_file=" + pki.ca, "dataset=" + DS,
                      "cache_dir=none")
    truth = fake.truth(DS)["items"]
    assert read_all(data_paths(m, truth), truth) == []
    conns, later, resumed = sessions(web, "120 files")
    assert len(later) >= 10
    assert resumed >= 0.8 * len(later)
