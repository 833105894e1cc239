# What the fake's routes take and give: a request as the server read it, an
# answer to send, and the API's errors ({"detail": ...}) raised on the way.

from __future__ import annotations

import dataclasses
import json
from http.client import HTTPMessage

JSON_HEADERS = (("Content-Type", "application/json"),)


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def encode_json(obj: object) -> bytes:
    """JSON as UTF-8, with surrogate-escaped (invalid UTF-8) keys as raw bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")


def json_response(status: int, obj: object, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, encode_json(obj), [*JSON_HEADERS, *headers])


class ApiError(Exception):
    """An error answer: {"detail": ...} with the given status."""

    def __init__(self, status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> Response:
        return json_response(self.status, {"detail": self.detail}, self.headers)


def not_found() -> ApiError:
    return ApiError(404, "Not found.")


def method_not_allowed(method: str, allowed: list[str]) -> Response:
    return ApiError(405, f'Method "{method}" not allowed.', (("Allow", ", ".join(allowed)),)).response()


@dataclasses.dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: HTTPMessage
    body: bytes
    params: tuple[str, ...] = ()
    etag_change: bool = False
    wrong_total: int | None = None
    nonce_cursor: bool = False

    def json_body(self) -> dict:
        if not self.body.strip():
            return {}
        try:
            obj = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Body is not JSON.") from None
        if not isinstance(obj, dict):
            raise ApiError(400, "Body must be a JSON object.")
        return obj
