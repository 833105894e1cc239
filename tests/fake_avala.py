# A local, deterministic stand-in for the Avala REST API used by the avalafs tests and benchmark:
# datasets of items and sequences in both field dialects, presigned expiring files, faults, counters.
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
import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from fake.messages import (JSON_HEADERS, ApiError, Request, Response, encode_json, json_response,
                           method_not_allowed, not_found)
from fake.model import (ORDERINGS, Blob, BlobStore, Dataset, DatasetSpec, Entry, FileSpec, Item, Sequence,
                        parse_dataset_name, parse_dataset_spec, write_data_files)
from fake.state import Fault, State, fault_body, parse_fault

DEFAULT_KEY = "test-key"
DEFAULT_DATASET = "demo/cars:items=12,sequences=2"
PAGE_SIZE = 100
PAGE_SIZE_MAX = 1000
BLOB_BUDGET = 256 * 1024 * 1024
STALL_SECONDS = 3600
MALFORMED_BODY = b'{"results": [ {"uid": '
RATE_CHUNK = 64 * 1024


# ---------------------------------------------------------------- ranges


class RangeNotSatisfiable(Exception):
    pass


RANGE_PATTERN = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """Inclusive (first, last) of a single byte range, or None to serve everything."""
    match = RANGE_PATTERN.fullmatch(header.strip()) if header else None
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        return max(total - suffix, 0), total - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= total:
        raise RangeNotSatisfiable
    return start, total - 1 if not last else min(int(last), total - 1)


# ---------------------------------------------------------------- pagination


@dataclasses.dataclass
class Page:
    results: list
    next_cursor: str | None
    previous_cursor: str | None


def encode_cursor(ordering: str, position: int, backwards: bool, nonce: str | None = None) -> str:
    fields = {"o": ordering, "p": position, "b": int(backwards)}
    if nonce:
        fields["n"] = nonce
    token = json.dumps(fields, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


def decode_cursor(text: str, ordering: str, length: int) -> tuple[int, bool]:
    """(position, backwards) of a cursor made for this ordering, else ApiError 400."""
    try:
        token = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        position, backwards = token["p"], token["b"]
        valid = (token["o"] == ordering and type(position) is int and 0 <= position <= length
                 and backwards in (0, 1) and type(backwards) is int)
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise ApiError(400, "Invalid cursor")
    return position, bool(backwards)


def parse_limit(query: dict[str, str]) -> int:
    text = query.get("limit")
    if text is None:
        return PAGE_SIZE
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise ApiError(400, "Invalid limit: must be a positive integer.")
    return min(int(text), PAGE_SIZE_MAX)


def parse_ordering(query: dict[str, str]) -> str:
    ordering = query.get("ordering", "")
    if ordering and ordering not in ORDERINGS:
        raise ApiError(400, f"Invalid ordering: {ordering!r}. Use one of {', '.join(ORDERINGS)}.")
    return ordering


def paginate(entries: list, live: Callable, ordering: str, cursor: str | None, limit: int,
             loop: bool = False) -> Page:
    """One page of the live entries of a fixed ordered list.

    A cursor holds a position in the full list (dead entries included), so
    removing entries never shifts the pages that follow. With @loop, next
    leads back to this very page under a cursor text never sent before.
    """
    position, backwards = (0, False) if cursor is None else decode_cursor(cursor, ordering, len(entries))
    picked = []
    start = end = position
    if backwards:
        while start > 0 and len(picked) < limit:
            start -= 1
            if live(entries[start]):
                picked.append(entries[start])
        picked.reverse()
    else:
        while end < len(entries) and len(picked) < limit:
            if live(entries[end]):
                picked.append(entries[end])
            end += 1
    has_next = any(live(entries[index]) for index in range(end, len(entries)))
    has_previous = any(live(entries[index]) for index in range(start - 1, -1, -1))
    if loop:
        return Page(picked, encode_cursor(ordering, position, backwards, uuid.uuid4().hex), None)
    return Page(
        results=picked,
        next_cursor=encode_cursor(ordering, end, False) if has_next else None,
        previous_cursor=encode_cursor(ordering, start, True) if has_previous else None,
    )


# ---------------------------------------------------------------- files


class UrlSigner:
    """Presigned URL epochs: one expiry time and HMAC signatures per epoch."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        self._secret = os.urandom(32)
        self._start = int(time.time())
        self._lock = threading.Lock()

    def expires(self) -> int:
        """Expiry of the current epoch; a new epoch begins once it has passed."""
        with self._lock:
            now = time.time()
            if now >= self._start + self.ttl:
                self._start = int(now)
            return self._start + self.ttl

    def new_epoch(self) -> int:
        with self._lock:
            self._start = max(int(time.time()), self._start + 1)
            return self._start + self.ttl

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}{expires}".encode(), hashlib.sha256).hexdigest()

    def problem(self, path: str, expires_text: str, signature: str) -> str | None:
        """Why a signed URL is refused, or None when it is good."""
        if not expires_text.isdigit() or not hmac.compare_digest(
                self.sign(path, int(expires_text)).encode(), signature.encode("utf-8", "replace")):
            return "Signature does not match"
        expires = int(expires_text)
        if expires < self.expires() or time.time() > expires:
            return "Request has expired"
        return None


def file_response(blob: Blob, content_type: str, range_header: str | None,
                  wrong_total: int | None = None) -> Response:
    headers = [("Content-Type", content_type), ("Accept-Ranges", "bytes"), ("ETag", blob.etag)]
    total = len(blob.data)
    try:
        span = parse_range(range_header, total)
    except RangeNotSatisfiable:
        return Response(416, b"", headers + [("Content-Range", f"bytes */{total}")])
    if span is None:
        return Response(200, blob.data, headers)
    first, last = span
    said = total if wrong_total is None else wrong_total
    return Response(206, blob.data[first:last + 1], headers + [("Content-Range", f"bytes {first}-{last}/{said}")])


# ---------------------------------------------------------------- application


class FakeAvala:
    """Answers every request; the HTTP handler only moves bytes."""

    def __init__(self, datasets: list[Dataset], key: str, url_ttl: int, discovery: bool):
        self.datasets = {(ds.spec.owner, ds.spec.slug): ds for ds in datasets}
        self.discovery = discovery
        self.state = State(key)
        self.signer = UrlSigner(url_ttl)
        self.blobs = BlobStore(BLOB_BUDGET)
        self.address = ""
        self.scheme = "http"
        segment = r"([^/]+)"
        dataset = rf"/api/v1/datasets/{segment}/{segment}/"
        self.api_routes = [
            ("datasets_list", re.compile(r"/api/v1/datasets/"), self.datasets_list),
            ("dataset_get", re.compile(dataset), self.dataset_get),
            ("items_list", re.compile(dataset + "items/"), self.items_list),
            ("item_get", re.compile(dataset + rf"items/{segment}/"), self.item_get),
            ("sequences_list", re.compile(dataset + "sequences/"), self.sequences_list),
            ("sequence_get", re.compile(dataset + rf"sequences/{segment}/"), self.sequence_get),
            ("file", re.compile(rf"/files/{segment}/{segment}/{segment}/{segment}/{segment}"), self.file),
        ]
        self.control_routes = [
            ("GET", re.compile(r"/_fake/stats/?"), self.control_stats),
            ("POST", re.compile(r"/_fake/reset/?"), self.control_reset),
            ("POST", re.compile(r"/_fake/fault/?"), self.control_add_fault),
            ("DELETE", re.compile(r"/_fake/fault/?"), self.control_clear_faults),
            ("POST", re.compile(r"/_fake/key/?"), self.control_key),
            ("POST", re.compile(r"/_fake/delete/?"), self.control_delete),
            ("POST", re.compile(r"/_fake/data_url/?"), self.control_data_url),
            ("POST", re.compile(r"/_fake/reupload/?"), self.control_reupload),
            ("POST", re.compile(r"/_fake/expire/?"), self.control_expire),
            ("GET", re.compile(rf"/_fake/truth/{segment}/{segment}/?"), self.control_truth),
            ("GET", re.compile(rf"/_fake/file/{segment}/{segment}/{segment}/{segment}/?"), self.control_file),
        ]

    # -- dispatch

    def public(self, request: Request) -> tuple[Response, Fault | None]:
        """Answer an API or file request; returns the answer and the fault to deliver it with."""
        route, handler = "unknown", None
        for name, pattern, candidate in self.api_routes:
            match = pattern.fullmatch(request.path)
            if match:
                route, handler = name, candidate
                request.params = tuple(unquote(group) for group in match.groups())
                break
        self.state.count(route)
        if route == "file" and "X-Avala-Api-Key" in request.headers:
            self.state.count("file_with_key")
        fault = None
        if handler is None:
            response = not_found().response()
        elif request.method not in ("GET", "HEAD"):
            response = method_not_allowed(request.method, ["GET", "HEAD"])
        else:
            fault = self.state.take_fault(route)
            self.state.begin(route)
            try:
                response = self.answer(handler, request, fault)
            finally:
                self.state.end(route)
        self.state.record(route, request, response.status)
        return response, fault

    def answer(self, handler: Callable[[Request], Response], request: Request, fault: Fault | None) -> Response:
        response = self.answer_plain(handler, request, fault)
        if fault is not None and fault.headers:
            response.headers = [*response.headers, *fault.headers.items()]
        return response

    def answer_plain(self, handler: Callable[[Request], Response], request: Request,
                     fault: Fault | None) -> Response:
        if fault is not None:
            if fault.latency:
                time.sleep(fault.latency)
            if fault.status is not None:
                retry = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
                body = fault_body(fault) if fault.body is not None else encode_json({"detail": "fault"})
                return Response(fault.status, body, [*JSON_HEADERS, *retry])
            if fault.malformed:
                return Response(200, MALFORMED_BODY, list(JSON_HEADERS))
            if fault.body is not None:
                return Response(200, fault_body(fault), list(JSON_HEADERS))
            if fault.oversize is not None:
                head = b'{"results": [], "next": null, "pad": "'
                pad = fault.oversize - len(head) - 2
                return Response(200, head + b"x" * pad + b'"}', list(JSON_HEADERS))
            if fault.redirect:
                return Response(302, b"", [("Location", fault.redirect)])
            request.etag_change = fault.etag_change
            request.wrong_total = fault.wrong_total
            request.nonce_cursor = fault.nonce_cursor
        try:
            return handler(request)
        except ApiError as error:
            return error.response()

    def control(self, request: Request) -> Response:
        """Answer a /_fake/ request."""
        allowed = []
        for method, pattern, handler in self.control_routes:
            match = pattern.fullmatch(request.path)
            if not match:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            request.params = tuple(unquote(group) for group in match.groups())
            try:
                return handler(request)
            except ApiError as error:
                return error.response()
        if allowed:
            return method_not_allowed(request.method, allowed)
        return not_found().response()

    # -- helpers

    def authorize(self, request: Request) -> None:
        key = request.headers.get("X-Avala-Api-Key")
        if key is None:
            raise ApiError(401, "Authentication credentials were not provided.")
        if key != self.state.key:
            raise ApiError(401, "Invalid API key.")

    def readable_dataset(self, request: Request) -> Dataset:
        """The dataset named by the first two path parameters, for the API."""
        self.authorize(request)
        dataset = self.datasets.get(request.params[:2])
        if dataset is None:
            raise not_found()
        if dataset.forbidden:
            raise ApiError(403, "You do not have permission to perform this action.")
        return dataset

    def link(self, dataset: Dataset, entry: Entry, file: FileSpec, expires: int) -> str:
        """The URL handed out for a file in the epoch ending at expires."""
        if file.kind == "data" and dataset.spec.data_base:
            return f"{dataset.spec.data_base}/{entry.uid}{file.ext}"
        path = f"{dataset.files_path}/{entry.uid}/{file.kind}/{file.kind}{file.ext}"
        return f"{self.scheme}://{self.address}{path}?expires={expires}&sig={self.signer.sign(path, expires)}"

    def object_of(self, dataset: Dataset, entry: Entry, expires: int) -> dict:
        """The entry as the API lists it in the current URL epoch."""
        def render(entry: Entry) -> dict:
            def link(file: FileSpec) -> str:
                return self.link(dataset, entry, file, expires)

            if isinstance(entry, Item):
                return dataset.render_item(entry, link)
            return dataset.render_sequence(entry, link)
        return dataset.cached_object(entry, expires, render)

    def page_response(self, request: Request, page: Page, results: list) -> Response:
        return json_response(200, {
            "next": self.page_link(request, page.next_cursor),
            "previous": self.page_link(request, page.previous_cursor),
            "results": results,
        })

    def page_link(self, request: Request, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        query = dict(request.query, cursor=cursor)
        host = request.headers.get("Host") or self.address
        return f"{self.scheme}://{host}{request.path}?{urlencode(sorted(query.items()))}"

    def list_entries(self, request: Request, orders_of: Callable[[Dataset], dict[str, list]]) -> Response:
        dataset = self.readable_dataset(request)
        ordering = parse_ordering(request.query)
        limit = parse_limit(request.query)
        page = paginate(orders_of(dataset)[ordering], dataset.is_live, ordering, request.query.get("cursor"), limit,
                        loop=request.nonce_cursor)
        expires = self.signer.expires()
        return self.page_response(request, page, [self.object_of(dataset, entry, expires) for entry in page.results])

    # -- API routes

    def datasets_list(self, request: Request) -> Response:
        if not self.discovery:
            raise not_found()
        self.authorize(request)
        visible = [dataset for dataset in self.datasets.values() if not dataset.forbidden]
        page = paginate(visible, lambda dataset: True, "", request.query.get("cursor"), parse_limit(request.query))
        return self.page_response(request, page, [dataset.summary() for dataset in page.results])

    def dataset_get(self, request: Request) -> Response:
        return json_response(200, self.readable_dataset(request).summary())

    def items_list(self, request: Request) -> Response:
        return self.list_entries(request, lambda dataset: dataset.item_orders)

    def sequences_list(self, request: Request) -> Response:
        return self.list_entries(request, lambda dataset: dataset.sequence_orders)

    def item_get(self, request: Request) -> Response:
        dataset = self.readable_dataset(request)
        item = dataset.live_entry(request.params[2], Item)
        if item is None:
            raise not_found()
        return json_response(200, self.object_of(dataset, item, self.signer.expires()))

    def sequence_get(self, request: Request) -> Response:
        dataset = self.readable_dataset(request)
        sequence = dataset.live_entry(request.params[2], Sequence)
        if sequence is None:
            raise not_found()
        obj = self.object_of(dataset, sequence, self.signer.expires())
        return json_response(200, dict(obj, frames=sequence.frames()))

    def file(self, request: Request) -> Response:
        owner, slug, uid, kind, _ = request.params
        file = self.live_file(owner, slug, uid, kind)
        problem = self.signer.problem(request.path, request.query.get("expires", ""), request.query.get("sig", ""))
        if problem:
            raise ApiError(403, problem)
        seed_text = file.changed_seed_text if request.etag_change else file.seed_text
        return file_response(self.blobs.blob(seed_text, file.size), file.content_type, request.headers.get("Range"),
                             request.wrong_total)

    def live_file(self, owner: str, slug: str, uid: str, kind: str) -> FileSpec:
        dataset = self.datasets.get((owner, slug))
        entry = dataset.entry(uid) if dataset else None
        if entry is None or not dataset.is_live(entry) or kind not in entry.files:
            raise not_found()
        return entry.files[kind]

    # -- control routes

    def control_dataset(self, name: str) -> Dataset:
        try:
            dataset = self.datasets.get(parse_dataset_name(name))
        except argparse.ArgumentTypeError:
            dataset = None
        if dataset is None:
            raise not_found()
        return dataset

    def control_stats(self, request: Request) -> Response:
        return json_response(200, self.state.snapshot())

    def control_reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response(200, {"ok": True})

    def control_add_fault(self, request: Request) -> Response:
        fault = parse_fault(request.json_body())
        self.state.add_fault(fault)
        return json_response(200, {"fault": dataclasses.asdict(fault)})

    def control_clear_faults(self, request: Request) -> Response:
        self.state.clear_faults()
        return json_response(200, {"ok": True})

    def control_key(self, request: Request) -> Response:
        key = request.json_body().get("key")
        if not isinstance(key, str) or not key:
            raise ApiError(400, "key must be a non-empty string")
        self.state.key = key
        return json_response(200, {"ok": True})

    def control_delete(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.control_dataset(str(body.get("dataset")))
        uid = body.get("uid")
        if dataset.entry(uid) is None:
            raise not_found()
        dataset.deleted.add(uid)
        return json_response(200, {"deleted": uid})

    def control_data_url(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.control_dataset(str(body.get("dataset")))
        uid, url = body.get("uid"), body.get("url")
        if dataset.entry(uid) is None or not isinstance(url, str):
            raise ApiError(400, "need the uid of an item and a url string")
        dataset.data_urls[uid] = url
        dataset.forget_objects()
        return json_response(200, {"uid": uid, "url": url})

    def control_reupload(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.control_dataset(str(body.get("dataset")))
        item = dataset.live_entry(body.get("uid"), Item)
        if item is None:
            raise not_found()
        updated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        dataset.items.reupload(item.uid, updated_at)
        dataset.forget_objects()
        return json_response(200, {"uid": item.uid, "updated_at": updated_at})

    def control_expire(self, request: Request) -> Response:
        return json_response(200, {"expires": self.signer.new_epoch()})

    def control_truth(self, request: Request) -> Response:
        dataset = self.control_dataset("/".join(request.params))
        expires = self.signer.expires()

        def truth(entry: Entry) -> dict:
            record = {"uid": entry.uid, "key": entry.key, "key_hex": entry.key_hex,
                      "object": self.object_of(dataset, entry, expires)}
            if isinstance(entry, Sequence):
                record["views"] = entry.views
            record["files"] = {kind: file_truth(entry, file) for kind, file in entry.files.items()}
            return record

        def file_truth(entry: Entry, file: FileSpec) -> dict:
            digest = self.blobs.sha256(file.seed_text, file.size)
            return {"sha256": digest, "size": file.size, "etag": f'"{digest[:16]}"',
                    "url": self.link(dataset, entry, file, expires)}

        return json_response(200, {
            "items": [truth(item) for item in dataset.item_orders[""] if dataset.is_live(item)],
            "sequences": [truth(sequence) for sequence in dataset.sequence_orders[""] if dataset.is_live(sequence)],
        })

    def control_file(self, request: Request) -> Response:
        file = self.live_file(*request.params)
        blob = self.blobs.blob(file.seed_text, file.size)
        return Response(200, blob.data, [("Content-Type", file.content_type), ("ETag", blob.etag)])


# ---------------------------------------------------------------- server


class Handler(BaseHTTPRequestHandler):
    """Moves requests into FakeAvala and answers back, keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-avala"
    disable_nagle_algorithm = True
    server: "FakeServer"

    def setup(self) -> None:
        self.server.app.state.count("connections")
        if isinstance(self.request, ssl.SSLSocket):
            # not in accept(): one slow or failing handshake must not stop
            # the server taking the next connection
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        body = self.read_body()
        if body is None:
            return
        request = Request(
            method=self.command, target=self.path, path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers=self.headers, body=body,
        )
        app = self.server.app
        if target.path.startswith("/_fake/"):
            self.deliver(app.control(request), None)
        else:
            self.deliver(*app.public(request))

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 400 to a bad Content-Length."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "Bad Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def deliver(self, response: Response, fault: Fault | None) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        body = b"" if self.command == "HEAD" else response.body
        if fault is not None and fault.stall:
            self.server.app.state.stall_release().wait(STALL_SECONDS)
            self.close_connection = True
        elif fault is not None and fault.truncate:
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
        elif fault is not None and fault.rate:
            start = time.monotonic()
            for at in range(0, len(body), RATE_CHUNK):
                self.wfile.write(body[at:at + RATE_CHUNK])
                ahead = start + (at + RATE_CHUNK) / fault.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: FakeAvala, quiet: bool,
                 tls: ssl.SSLContext | None = None):
        self.app = app
        self.quiet = quiet
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        host, port = self.server_address[:2]
        app.address = f"{url_host(host)}:{port}"
        if tls is not None:
            app.scheme = "https"

    def get_request(self) -> tuple[socket.socket, object]:
        connection, client = super().get_request()
        if self.tls is not None:
            # the handshake waits for Handler.setup, in the connection's thread
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, client

    def handle_error(self, request: object, client_address: object) -> None:
        # a client gone, slow, or refusing our certificate is not the fake's error
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            super().handle_error(request, client_address)


def url_host(host: str) -> str:
    """How to write the bound address in a URL (wildcards become loopback)."""
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"[{ip}]" if ip.version == 6 else str(ip)


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
    server = FakeServer((args.host, args.port), app, quiet=args.quiet, tls=tls)
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
