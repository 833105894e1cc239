# The fake's control routes (/_fake/): what the tests read of it (counters, ground
# truth, raw bytes) and how they change it (faults, key, deletion, URL expiry).

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import datetime, timezone
from urllib.parse import unquote

from .api import FakeAvala
from .messages import ApiError, Request, Response, json_response, method_not_allowed, not_found
from .model import Dataset, Entry, FileSpec, Item, Sequence, parse_dataset_name
from .state import parse_fault


class Control:
    """Answers the /_fake/ requests on the datasets and state of a FakeAvala."""

    def __init__(self, app: FakeAvala):
        self.app = app
        segment = r"([^/]+)"
        self.routes = [
            ("GET", re.compile(r"/_fake/stats/?"), self.stats),
            ("POST", re.compile(r"/_fake/reset/?"), self.reset),
            ("POST", re.compile(r"/_fake/fault/?"), self.add_fault),
            ("DELETE", re.compile(r"/_fake/fault/?"), self.clear_faults),
            ("POST", re.compile(r"/_fake/key/?"), self.key),
            ("POST", re.compile(r"/_fake/delete/?"), self.delete),
            ("POST", re.compile(r"/_fake/data_url/?"), self.data_url),
            ("POST", re.compile(r"/_fake/reupload/?"), self.reupload),
            ("POST", re.compile(r"/_fake/expire/?"), self.expire),
            ("GET", re.compile(rf"/_fake/truth/{segment}/{segment}/?"), self.truth),
            ("GET", re.compile(rf"/_fake/file/{segment}/{segment}/{segment}/{segment}/?"), self.file),
        ]

    def answer(self, request: Request) -> Response:
        """Answer a /_fake/ request."""
        allowed = []
        for method, pattern, handler in self.routes:
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

    def dataset(self, name: str) -> Dataset:
        """The dataset "OWNER/SLUG" names, else 404."""
        try:
            dataset = self.app.datasets.get(parse_dataset_name(name))
        except argparse.ArgumentTypeError:
            dataset = None
        if dataset is None:
            raise not_found()
        return dataset

    def stats(self, request: Request) -> Response:
        return json_response(200, self.app.state.snapshot())

    def reset(self, request: Request) -> Response:
        self.app.state.reset()
        return json_response(200, {"ok": True})

    def add_fault(self, request: Request) -> Response:
        fault = parse_fault(request.json_body())
        self.app.state.add_fault(fault)
        return json_response(200, {"fault": dataclasses.asdict(fault)})

    def clear_faults(self, request: Request) -> Response:
        self.app.state.clear_faults()
        return json_response(200, {"ok": True})

    def key(self, request: Request) -> Response:
        key = request.json_body().get("key")
        if not isinstance(key, str) or not key:
            raise ApiError(400, "key must be a non-empty string")
        self.app.state.key = key
        return json_response(200, {"ok": True})

    def delete(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.dataset(str(body.get("dataset")))
        uid = body.get("uid")
        if dataset.entry(uid) is None:
            raise not_found()
        dataset.deleted.add(uid)
        return json_response(200, {"deleted": uid})

    def data_url(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.dataset(str(body.get("dataset")))
        uid, url = body.get("uid"), body.get("url")
        if dataset.entry(uid) is None or not isinstance(url, str):
            raise ApiError(400, "need the uid of an item and a url string")
        dataset.data_urls[uid] = url
        dataset.forget_objects()
        return json_response(200, {"uid": uid, "url": url})

    def reupload(self, request: Request) -> Response:
        body = request.json_body()
        dataset = self.dataset(str(body.get("dataset")))
        item = dataset.live_entry(body.get("uid"), Item)
        if item is None:
            raise not_found()
        updated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        dataset.items.reupload(item.uid, updated_at)
        dataset.forget_objects()
        return json_response(200, {"uid": item.uid, "updated_at": updated_at})

    def expire(self, request: Request) -> Response:
        return json_response(200, {"expires": self.app.signer.new_epoch()})

    def truth(self, request: Request) -> Response:
        dataset = self.dataset("/".join(request.params))
        expires = self.app.signer.expires()

        def entry_truth(entry: Entry) -> dict:
            record = {"uid": entry.uid, "key": entry.key, "key_hex": entry.key_hex,
                      "object": self.app.object_of(dataset, entry, expires)}
            if isinstance(entry, Sequence):
                record["views"] = entry.views
            record["files"] = {kind: file_truth(entry, file) for kind, file in entry.files.items()}
            return record

        def file_truth(entry: Entry, file: FileSpec) -> dict:
            digest = self.app.blobs.sha256(file.seed_text, file.size)
            return {"sha256": digest, "size": file.size, "etag": f'"{digest[:16]}"',
                    "url": self.app.link(dataset, entry, file, expires)}

        return json_response(200, {
            "items": [entry_truth(item) for item in dataset.item_orders[""] if dataset.is_live(item)],
            "sequences": [entry_truth(sequence) for sequence in dataset.sequence_orders[""]
                          if dataset.is_live(sequence)],
        })

    def file(self, request: Request) -> Response:
        file = self.app.live_file(*request.params)
        blob = self.app.blobs.blob(file.seed_text, file.size)
        return Response(200, blob.data, [("Content-Type", file.content_type), ("ETag", blob.etag)])
