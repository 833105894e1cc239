# The fake Avala API itself: the routes of /api/v1/ and of the signed /files/
# URLs, pagination by cursor, byte ranges, and the faults they are answered with.

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from typing import Callable
from urllib.parse import unquote, urlencode

from .messages import (JSON_HEADERS, ApiError, Request, Response, encode_json, json_response,
                       method_not_allowed, not_found)
from .model import ORDERINGS, Blob, BlobStore, Dataset, Entry, FileSpec, Item, Sequence
from .state import Fault, State, fault_body

PAGE_SIZE = 100
PAGE_SIZE_MAX = 1000
BLOB_BUDGET = 256 * 1024 * 1024
MALFORMED_BODY = b'{"results": [ {"uid": '


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
    """Answers the API and file requests; the HTTP handler only moves bytes."""

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
