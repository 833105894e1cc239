# A mount with its dataset on disk starts without the network: the API not
# there (connection refused, a server error) and a complete listing in
# cache_dir, it mounts at once from it, says so in one line, serves the
# listing and every cached byte, fails an uncached read with EIO at once,
# and goes back online when the API answers. A refusal of the platform's
# (a rejected key) still refuses; nothing kept still refuses.
import os
import tempfile
import time

import pytest

from conftest import sha256_file

DS = "acme/cars"
SPEC = DS + ":items=40,size_known=1,min_size=2000,max_size=20000"


def data_of(m, t):
    folder = m.p("acme", "cars", "items", t["key"].replace("/", "%2F"))
    return os.path.join(folder, [f for f in os.listdir(folder)
                                 if f.startswith("data")][0])


def test_the_api_away_mounts_from_what_is_kept(fake_factory, mount_factory,
                                              tmpdir_short):
    fake = fake_factory("--dataset", SPEC)
    truth = fake.truth(DS)["items"]
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "prefetch=0")
    names = sorted(os.listdir(m.p("acme", "cars", "items")))
    for t in truth[:5]:
        assert sha256_file(data_of(m, t)) == t["files"]["data"]["sha256"]
    m.stop()
    api_url = fake.api_url
    fake.stop()  # connection refused from now on

    start = time.time()
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "api_url=" + api_url)
    assert time.time() - start < 10
    said = [l for l in m.log().splitlines() if "offline" in l]
    assert len(said) == 1 and "acme/cars" in said[0], m.log()
    # the listing and every cached byte
    assert sorted(os.listdir(m.p("acme", "cars", "items"))) == names
    for t in truth[:5]:
        assert sha256_file(data_of(m, t)) == t["files"]["data"]["sha256"]
    # an uncached file: EIO at once, not after the deadline
    start = time.time()
    with pytest.raises(OSError) as e:
        sha256_file(data_of(m, truth[20]))
    assert e.value.errno == 5
    assert time.time() - start < 5


def test_nothing_kept_still_refuses(fake_factory, mount_factory):
    fake = fake_factory("--dataset", SPEC)
    api_url = fake.api_url
    fake.stop()
    with pytest.raises(RuntimeError) as e:
        mount_factory(fake, "dataset=" + DS, "api_url=" + api_url)
    assert "cannot connect" in str(e.value) or "reach" in str(e.value)


def test_a_rejected_key_still_refuses(fake_factory, mount_factory,
                                      tmpdir_short):
    fake = fake_factory("--dataset", SPEC)
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    os.listdir(m.p("acme", "cars", "items"))
    m.stop()
    with pytest.raises(RuntimeError) as e:
        mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      key="not-the-key")
    assert "rejected" in str(e.value)


def test_a_server_error_mounts_offline_and_comes_back(fake_factory,
                                                      mount_factory,
                                                      tmpdir_short):
    fake = fake_factory("--dataset", SPEC)
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    names = sorted(os.listdir(m.p("acme", "cars", "items")))
    m.stop()
    # the API answers 503 for a while: offline, then back
    fake.fault(route="*", status=503, count=-1)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache, "ttl=1s",
                      "timeout=3s")
    assert "offline" in m.log()
    assert sorted(os.listdir(m.p("acme", "cars", "items"))) == names
    fake.reset()  # the faults cleared: the API answers
    deadline = time.time() + 20
    while "online" not in m.log().replace("offline", "") and \
            time.time() < deadline:
        os.listdir(m.p("acme", "cars", "items"))
        time.sleep(0.5)
    assert "the API answers again: online" in m.log(), m.log()
    assert fake.counts()["items_list"] >= 1, fake.counts()
    assert sorted(os.listdir(m.p("acme", "cars", "items"))) == names


def test_a_refusal_or_bad_tls_still_refuses_with_a_listing_kept(
        tls_fake_factory, pki, mount_factory, tmpdir_short):
    fake = tls_fake_factory("--dataset", SPEC)
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "ca_file=" + pki.ca)
    os.listdir(m.p("acme", "cars", "items"))
    m.stop()
    # a certificate the mount does not trust: the platform is there, the
    # mount must not pretend it is not
    with pytest.raises(RuntimeError) as e:
        mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache)
    assert "TLS" in str(e.value) and "offline" not in str(e.value)
    # a 403: the platform's answer
    fake.fault(route="*", status=403, count=-1)
    with pytest.raises(RuntimeError) as e:
        mount_factory(fake, "dataset=" + DS, "cache_dir=" + cache,
                      "ca_file=" + pki.ca)
    assert "offline" not in str(e.value)


def test_without_dataset_the_datasets_last_listed(fake_factory, mount_factory,
                                                  tmpdir_short):
    # three datasets listed; two read (listings kept), one never opened
    fake = fake_factory("--dataset", SPEC, "--dataset", "acme/bikes:items=6",
                        "--dataset", "zed/boats:items=5")
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmpdir_short)
    m = mount_factory(fake, "cache_dir=" + cache)
    cars = sorted(os.listdir(m.p("acme", "cars", "items")))
    boats = sorted(os.listdir(m.p("zed", "boats", "items")))
    assert sorted(os.listdir(m.p("acme"))) == ["bikes", "cars"]
    m.stop()
    api_url = fake.api_url
    fake.stop()

    m = mount_factory(fake, "cache_dir=" + cache, "api_url=" + api_url)
    said = [l for l in m.log().splitlines() if "offline" in l]
    assert len(said) == 1 and "2 datasets" in said[0], m.log()
    # the datasets with a listing kept, and only those
    assert sorted(os.listdir(m.path)) == ["acme", "zed"]
    assert os.listdir(m.p("acme")) == ["cars"]
    assert sorted(os.listdir(m.p("acme", "cars", "items"))) == cars
    assert sorted(os.listdir(m.p("zed", "boats", "items"))) == boats
    m.stop()

    # a list planted by someone else is not believed
    lists = [f for f in os.listdir(os.path.join(cache, "listings"))
             if f.startswith("datasets-")]
    assert len(lists) == 1
    path = os.path.join(cache, "listings", lists[0])
    os.chmod(path, 0o666)
    with pytest.raises(RuntimeError):
        mount_factory(fake, "cache_dir=" + cache, "api_url=" + api_url)
