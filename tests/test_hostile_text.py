# Server text turned against the admin (DESIGN section 5): error bodies that
# echo the key in any form or carry control bytes, and invalid JSON escapes.
import base64
import json
import os
import re
import shutil
import subprocess
from urllib.parse import quote

import pytest

# a key with the bytes JSON, percent-encoding and base64 each write apart
KEY = "sk/live+Zq9~abc=def_ghi-jkl0123"


def key_forms():
    """Every form of KEY a server may echo."""
    raw = KEY.encode()
    pct = quote(KEY, safe="")
    return {
        "raw": KEY,
        "json-escaped": KEY.replace("/", "\\/"),
        "json-unicode": "".join("\\u%04x" % c for c in raw),
        "percent-upper": pct,
        "percent-lower": re.sub("%[0-9A-F]{2}",
                                lambda m: m.group().lower(), pct),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64-inside": base64.b64encode(b"Bearer:" + raw + b";").decode(),
    }


def mount_refused(fake_factory, mount_factory, status, body):
    """A mount whose listing is answered @status with @body; its log."""
    fake = fake_factory("--dataset", "acme/cars:items=3")
    fake.set_key(KEY)
    m = mount_factory(fake, "dataset=acme/cars", key=KEY)
    fake.fault(route="items_list", status=status, body=body)
    with pytest.raises(PermissionError):
        os.listdir(m.p("acme", "cars", "items"))
    assert m.alive()
    return m.log()


def assert_no_key(log):
    for name, form in key_forms().items():
        assert form not in log, (name, log)


@pytest.mark.parametrize("form,status", [
    ("raw", 401), ("json-escaped", 403), ("json-unicode", 401),
    ("percent-upper", 403), ("percent-lower", 401), ("base64", 403),
    ("base64url", 401), ("base64-inside", 403),
])
def test_error_detail_never_logs_the_key(fake_factory, mount_factory, form,
                                         status):
    # the detail quotes the form as it is: JSON-decoding it leaves it so
    body = json.dumps({"detail": "denied for %s (try again)" %
                       key_forms()[form]})
    log = mount_refused(fake_factory, mount_factory, status, body)
    assert_no_key(log)
    # inside a longer base64 string, what holds no bit of the key stays
    line = r"HTTP %d: denied for \S*\[REDACTED\]\S* \(try again\)(;|$)" % status
    assert re.search(line, log, re.M), log


def test_json_escaped_key_on_the_wire(fake_factory, mount_factory):
    body = '{"detail": "denied for sk\\/live+Zq9~abc\\u003ddef_ghi-jkl0123"}'
    log = mount_refused(fake_factory, mount_factory, 401, body)
    assert_no_key(log)
    assert "HTTP 401: denied for [REDACTED]" in log, log


def test_error_body_that_is_not_a_detail_is_not_logged(fake_factory,
                                                       mount_factory):
    body = "<html><h1>Unauthorized</h1> %s %s</html>" % (
        KEY, key_forms()["base64"])
    log = mount_refused(fake_factory, mount_factory, 401, body)
    assert_no_key(log)
    assert "Unauthorized" not in log and "html" not in log, log
    assert re.search(r"acme/cars items: HTTP 401; the API key \(AVALA_API_KEY\)"
                     r" was rejected: unavailable until it is accepted$",
                     log, re.M), log


def test_error_detail_is_cut(fake_factory, mount_factory):
    body = json.dumps({"detail": "\u00e9" * 150 + "x" * 150 + "END"})
    log = mount_refused(fake_factory, mount_factory, 403, body)
    assert "HTTP 403: " + "\u00e9" * 150 + "x" * 50 + "\n" in log, log
    assert "END" not in log


def test_error_detail_cannot_forge_lines(fake_factory, mount_factory):
    body = json.dumps({"detail": "denied\n avalafs: forged\x1b[2J\r"
                       "\u009b31m caf\u00e9 \udcff!"}, ensure_ascii=False)
    log = mount_refused(fake_factory, mount_factory, 401, body)
    lines = [l for l in log.splitlines() if "forged" in l]
    assert lines == ["avalafs: acme/cars items: HTTP 401: denied\\x0a "
                     "avalafs: forged\\x1b[2J\\x0d\\xc2\\x9b31m caf\u00e9 "
                     "\\xff!; the API key (AVALA_API_KEY) was rejected: "
                     "unavailable until it is accepted"], log
    assert "\x1b" not in log and "\r" not in log and "\x9b" not in log


def test_lone_surrogate_costs_one_character(fake_factory, mount_factory):
    fake = fake_factory("--dataset", "acme/cars:items=3")
    m = mount_factory(fake, "dataset=acme/cars")
    objects = [t["object"] for t in fake.truth("acme/cars")["items"]]
    objects[1]["metadata"]["note"] = "NOTE"
    objects[2]["key"] = "KEY"
    texts = [json.dumps(o) for o in objects]
    # strings no strict decoder takes: a lone high and low surrogate, two
    # highs, a high at the end, \u without hex digits; one of them in a key
    texts[1] = texts[1].replace(
        '"NOTE"', '"a\\ud800b \\udc00 \\ud800\\ud800 \\uZZZZ \\ud83d\\ude00"')
    texts[1] = texts[1].replace('"metadata"', '"m\\udc00":1,"metadata"')
    texts[2] = texts[2].replace('"KEY"', '"k\\ud800.jpg"')
    fake.fault(route="items_list", body='{"next": null, "previous": null, '
               '"results": [%s]}' % ", ".join(texts))
    items = m.p("acme", "cars", "items")
    assert sorted(os.listdir(items)) == sorted(
        [objects[0]["key"], objects[1]["key"], "k\ufffd.jpg"])
    path = os.path.join(items, objects[1]["key"], "metadata.json")
    with open(path, "rb") as f:
        meta = json.loads(f.read().decode("utf-8"))
    assert meta["metadata"]["note"] == \
        "a\ufffdb \ufffd \ufffd\ufffd \ufffdZZZZ \U0001f600"
    assert meta["m\ufffd"] == 1
    if shutil.which("jq"):
        r = subprocess.run(["jq", "-r", ".metadata.note", path],
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode() == \
            "a\ufffdb \ufffd \ufffd\ufffd \ufffdZZZZ \U0001f600\n"
    with open(os.path.join(items, "k\ufffd.jpg", "metadata.json")) as f:
        assert json.load(f)["key"] == "k\ufffd.jpg"
    assert m.alive()
