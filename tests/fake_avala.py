# A local, deterministic stand-in for the Avala REST API used by the avalafs tests and benchmark: its
# contract (routes, faults, counters) and command line; its parts are in tests/fake/, one module each.
"""Fake Avala API server (Python standard library only).

One threaded HTTP/1.1 server (keep-alive, Content-Length on every answer)
serves three trees:

  /api/v1/...   the Avala REST API, guarded by the X-Avala-Api-Key header
  /files/...    presigned, expiring file URLs with Range support (no key)
  /_fake/...    control for tests: counters, faults, key change, deletion,
                URL expiry, ground truth (no key)

On start it prints "PORT <n>" on stdout (and writes "<n>\\n" to --port-file,
atomically). Request logging goes to stderr unless --quiet.

TLS
  --tls-cert FILE --tls-key FILE (PEM; the certificate file may carry its
  chain) make every tree HTTPS on the same port (Python's ssl module). The
  handshake runs in the connection's own thread, so a client that stalls
  or rejects the certificate holds up no one else, and its failure is not
  logged. The fake's own URLs (next/previous, /files) then say https; a
  data_base URL is used as given. Session tickets are OpenSSL's default
  (on).

DATASET SPEC (--dataset, repeatable)
  OWNER/SLUG[:opt=val[,opt=val...]] with options
    items=N         normal items (default 20)
    sequences=N     sequences (default 0)
    dialect=D       "documented" (data_url, thumbnail_url, status,
                    annotations_count) or "sdk" (url, thumbnails, annotations,
                    no status; every 7th item has "thumbnails": [] and a
                    "video_thumbnail" URL instead). Default documented.
    seed=N          seed of everything generated (default 1)
    hostile=1       add items with the keys "a/b.jpg", ".", "..", "%41",
                    "dup.jpg" (twice, two items), "x"*296 + ".jpg" (300 bytes),
                    "ñandú.png", "line\\nbreak.jpg", the invalid UTF-8 bytes
                    b"bad\\xff\\xfe.jpg" (raw on the wire), "" and null
    size_known=F    fraction of items whose metadata.size is given (0.5)
    updated=F       fraction of objects with an "updated_at" three days after
                    their "created_at", written with a +02:00 offset (0)
    min_size=B, max_size=B
                    range of data file sizes in bytes (1000..200000)
    images=1        data files, thumbnails and featured images are real pictures
                    (JPEG or PNG, drawn here, of the width and height the
                    metadata gives; a thumbnail is its data file's picture at
                    a quarter of the size); min_size and max_size are ignored
    meta_pad=B      every item's metadata carries a "notes" string of B
                    bytes (hostile listings: metadata far larger than a page)
    classes=N       keys shaped like an image dataset's: most are
                    "<class>/img_<n>.<ext>" over N class folders (some a level
                    deeper, "<class>/<front|rear>/img_<n>.<ext>"), every 7th
                    is flat ("frame_<n>.<ext>")
    data_base=URL   data URLs become URL/<uid><ext> instead of the fake's own
                    signed /files URLs (thumbnails stay on the fake)
    files_dir=PATH  with data_base: write each data file to PATH/<uid><ext>
                    at start-up
  Without --dataset the server holds demo/cars:items=12,sequences=2.
  Items are made on demand from the seed and their index (a dataset of a
  million items costs nothing until listed; pages go out at 20,000 items/s
  and more); a uid ends in its item's index in hex. Sequences are drawn from
  random.Random(f"{seed}:{owner}/{slug}"); file bytes
  are random.Random(f"{seed}:{uid}:{kind}").randbytes(size) (drawn 64 MiB at
  a time past 64 MiB) with kind data,
  thumbnail or featured. One item of a documented dataset has the unknown
  status "archived_v2"; the first sequence has a view keyed "cam/rear".

API (every path ends in "/")
  GET /api/v1/datasets/?limit=&cursor=                    datasets_list
  GET /api/v1/datasets/{owner}/{slug}/                    dataset_get
  GET /api/v1/datasets/{owner}/{slug}/items/?limit=&cursor=&ordering=
                                                          items_list
  GET /api/v1/datasets/{owner}/{slug}/items/{uid}/        item_get
  GET /api/v1/datasets/{owner}/{slug}/sequences/?limit=&cursor=&ordering=
                                                          sequences_list
  GET /api/v1/datasets/{owner}/{slug}/sequences/{uid}/    sequence_get
                                                          (adds "frames")
  Missing key: 401 "Authentication credentials were not provided."; wrong
  key: 401 "Invalid API key."; unknown dataset or object: 404 "Not found.";
  forbidden dataset: 403 on every call, and absent from the dataset list;
  other methods than GET and HEAD: 405. Errors are {"detail": "..."}.
  Pages are {"next", "previous", "results"} (no count). limit defaults to
  100, is capped at 1000, and anything not a positive integer is a 400.
  ordering is key, -key, created_at or -created_at (null keys sort as "",
  ties by uid); the default is created_at then uid. next/previous are
  absolute URLs on the request's Host header, carrying the request's other
  query parameters. The cursor is opaque (urlsafe base64 of JSON holding
  the ordering and a position); a bad one, or one made for another
  ordering, is a 400 "Invalid cursor". Positions refer to the full,
  never-changing order, so deleting objects never shifts a later page.

FILES
  /files/{owner}/{slug}/{uid}/{kind}/{kind}{ext}?expires=<unix>&sig=<hex>
  on the address the server bound. sig = HMAC-SHA256(per-process secret,
  path + expires). URLs belong to an epoch that lasts --url-ttl seconds (or
  until POST /_fake/expire), so objects are byte-for-byte stable within it.
  Bad sig: 403 "Signature does not match"; past or superseded expires: 403
  "Request has expired"; deleted object: 404. Range bytes=a-b, a- and -n give
  206 with Content-Range; unsatisfiable: 416 with "bytes */total"; a
  malformed or multi-part Range is ignored (200). Always ETag (first 16 hex
  digits of the sha256 of the bytes), Accept-Ranges and Content-Type. HEAD
  works. A file request carrying X-Avala-Api-Key is served and counted as
  file_with_key.

CONTROL (JSON in and out)
  GET    /_fake/stats    {"counts": {...}, "peaks": {...}, "requests": [last
                         1000 as {"route", "path", "status", "has_key",
                         "range"}]}. peaks: per route, the most requests
                         being answered at once. Counters:
                         the route names above plus file, file_with_key,
                         unauthorized (401s sent), connections (TCP
                         connections accepted), unknown (other paths) and
                         proxy_auth (requests that carried a
                         Proxy-Authorization header).
                         Control calls are neither counted nor logged.
  POST   /_fake/reset    zero the counters, clear the faults and the log
  POST   /_fake/fault    queue a fault (fields below)
  DELETE /_fake/fault    clear all faults (this also releases stalled answers)
  POST   /_fake/key      {"key": "new"}: change the valid API key
  POST   /_fake/data_url {"dataset", "uid", "url"}: the item's data URL is
                         "url" from now on (any scheme, for hostile tests)
  POST   /_fake/delete   {"dataset": "owner/slug", "uid": "..."}: the item or
                         sequence vanishes from lists, gets and files (404)
  POST   /_fake/reupload {"dataset", "uid"}: the item's data file gets new
                         bytes of the same size, and the item an updated_at
                         of now
  POST   /_fake/expire   start a new URL epoch: every URL handed out so far
                         answers 403 "Request has expired"
  GET    /_fake/truth/{owner}/{slug}
                         {"items": [{"uid", "key", "key_hex", "object",
                         "files": {"data": {...}, "thumbnail": {...}}}],
                         "sequences": [{..., "views", "files": {"featured":
                         {...}}}]}, each file {"sha256", "size", "url",
                         "etag"}, "object" exactly as listed now, in default
                         order, deleted objects left out; key_hex is the hex
                         of the raw key bytes (null for a null key)
  GET    /_fake/file/{owner}/{slug}/{uid}/{kind}
                         the raw current bytes, no signature needed

FAULTS (POST /_fake/fault body)
  route        a route name above, or "*" for every API and file route
  count        how many matching requests get it (default 1, -1 = forever)
  probability  instead of counting: each matching request gets it with this
               chance, until cleared
  latency      sleep this many seconds first, then go on
  status       answer this status with {"detail": "fault"}, or with body
  retry_after  with status: add Retry-After: <seconds>
  malformed    answer 200 with a broken JSON body
  body         answer 200, or status, with this string as the body, sent as
               UTF-8 but for "\\udc80".."\\udcff", each the raw byte it
               stands for (wrong types, hand-made pages, error bodies that
               echo the key or hold control bytes or invalid UTF-8...)
  oversize     answer 200 with a valid JSON object padded to this many bytes
  truncate     send the full Content-Length but half the body, then close
  stall        send the headers, then nothing for an hour (or until the
               faults are cleared), then close
  redirect     answer 302 with this Location (any scheme)
  etag_change  files: serve a different version of the bytes (same size,
               other ETag), as if re-uploaded
  wrong_total  files: a 206 answer's Content-Range names this total instead
               of the object's size (the body is right)
  headers      add these headers ({"Name": "value"}) to the answer, whatever
               it is (cache headers on an error, a Proxy-Status...)
  rate         send the body at this many bytes per second at most (what
               one connection to a far store carries); with count -1 and
               latency, a far store
  nonce_cursor lists: the page asked for, with a "next" that points back at
               the same page under a new cursor text each time (a loop a
               client cannot spot by comparing cursors)
  Faults are tried in the order queued; the first that matches applies.
"""

from __future__ import annotations

import argparse
import os
import ssl

from fake.api import FakeAvala
from fake.control import Control
from fake.model import Dataset, DatasetSpec, parse_dataset_name, parse_dataset_spec, write_data_files
from fake.server import FakeServer

DEFAULT_KEY = "test-key"
DEFAULT_DATASET = "demo/cars:items=12,sequences=2"


def announce(port: int, port_file: str | None) -> None:
    print(f"PORT {port}", flush=True)
    if port_file:
        temporary = f"{port_file}.{os.getpid()}.tmp"
        with open(temporary, "w") as out:
            out.write(f"{port}\n")
        os.replace(temporary, port_file)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fake_avala.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--name", metavar="HOST",
                        help="the host name in file URLs (default: the address bound)")
    parser.add_argument("--port-file", metavar="PATH", help="also write the port to PATH, atomically")
    parser.add_argument("--key", default=DEFAULT_KEY, help=f"the valid API key (default {DEFAULT_KEY})")
    parser.add_argument("--dataset", metavar="SPEC", action="append", type=parse_dataset_spec, default=[],
                        help=f"a dataset to serve, see DATASET SPEC (may repeat; default {DEFAULT_DATASET})")
    parser.add_argument("--forbid", metavar="OWNER/SLUG", action="append", type=parse_dataset_name, default=[],
                        help="a dataset that exists but answers 403 to every API call (created with "
                             "default options when not given by --dataset; may repeat)")
    parser.add_argument("--url-ttl", metavar="SECONDS", type=positive_int, default=3600,
                        help="lifetime of presigned URLs (default 3600)")
    parser.add_argument("--no-discovery", action="store_true", help="GET /api/v1/datasets/ answers 404")
    parser.add_argument("--quiet", action="store_true", help="log nothing")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (and chain)")
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    names = [(spec.owner, spec.slug) for spec in args.dataset]
    if len(set(names)) != len(names):
        parser.error("a dataset is given twice")
    return args


def build_datasets(specs: list[DatasetSpec], forbidden: list[tuple[str, str]]) -> list[Dataset]:
    specs = list(specs) or [parse_dataset_spec(DEFAULT_DATASET)]
    named = {(spec.owner, spec.slug) for spec in specs}
    specs += [DatasetSpec(owner, slug) for owner, slug in dict.fromkeys(forbidden) if (owner, slug) not in named]
    return [Dataset(spec, (spec.owner, spec.slug) in forbidden) for spec in specs]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    datasets = build_datasets(args.dataset, args.forbid)
    for dataset in datasets:
        if dataset.spec.files_dir:
            write_data_files(dataset)
    app = FakeAvala(datasets, key=args.key, url_ttl=args.url_ttl, discovery=not args.no_discovery)
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = FakeServer((args.host, args.port), app, Control(app), quiet=args.quiet, tls=tls)
    if args.name:
        app.address = f"{args.name}:{server.server_address[1]}"
    announce(server.server_address[1], args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
