# What the fake keeps between requests, shared by every thread: the counters,
# the request log, the faults queued by the tests and the valid API key.

from __future__ import annotations

import dataclasses
import random
import threading
from collections import deque
from typing import Callable

from .messages import ApiError, Request

LOG_LENGTH = 1000
API_ROUTES = (
    "datasets_list", "dataset_get", "items_list", "item_get",
    "sequences_list", "sequence_get", "file",
)
COUNTERS = API_ROUTES + ("file_with_key", "unauthorized", "connections", "unknown",
                         "proxy_auth")


@dataclasses.dataclass
class Fault:
    route: str
    count: int = 1
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    malformed: bool = False
    body: str | None = None
    oversize: int | None = None
    truncate: bool = False
    stall: bool = False
    probability: float | None = None
    etag_change: bool = False
    redirect: str | None = None
    wrong_total: int | None = None
    nonce_cursor: bool = False
    rate: int | None = None
    headers: dict | None = None


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _is_bool(value: object) -> bool:
    return type(value) is bool


FAULT_FIELD_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "count": (lambda value: _is_int(value) and (value >= 1 or value == -1), "a positive integer or -1"),
    "status": (lambda value: _is_int(value) and 100 <= value <= 599, "an HTTP status"),
    "retry_after": (lambda value: _is_int(value) and value >= 0, "whole seconds"),
    "latency": (lambda value: _is_number(value) and value >= 0, "seconds"),
    "probability": (lambda value: _is_number(value) and 0 <= value <= 1, "between 0 and 1"),
    "malformed": (_is_bool, "true or false"),
    "body": (lambda value: isinstance(value, str), "a string"),
    "oversize": (lambda value: _is_int(value) and 64 <= value <= 1 << 30, "a byte count"),
    "truncate": (_is_bool, "true or false"),
    "stall": (_is_bool, "true or false"),
    "etag_change": (_is_bool, "true or false"),
    "redirect": (lambda value: isinstance(value, str) and value != "", "a URL"),
    "wrong_total": (lambda value: _is_int(value) and value >= 0, "a byte count"),
    "nonce_cursor": (_is_bool, "true or false"),
    "rate": (lambda value: _is_int(value) and value >= 1024, "bytes per second"),
    "headers": (lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v
        for k, v in value.items()), "an object of header names and values"),
}


def fault_body(fault: Fault) -> bytes:
    """A fault's body as sent: UTF-8, with surrogate-escaped characters as the raw bytes they stand for."""
    return fault.body.encode("utf-8", "surrogateescape")


def parse_fault(body: dict) -> Fault:
    """A Fault from a POST /_fake/fault body, or ApiError 400."""
    unknown = sorted(set(body) - set(FAULT_FIELD_CHECKS) - {"route"})
    if unknown:
        raise ApiError(400, f"Unknown fault fields: {', '.join(unknown)}")
    route = body.get("route")
    if route != "*" and route not in API_ROUTES:
        raise ApiError(400, f"route must be \"*\" or one of {', '.join(API_ROUTES)}")
    for name, (valid, expected) in FAULT_FIELD_CHECKS.items():
        if body.get(name) is not None and not valid(body[name]):
            raise ApiError(400, f"{name} must be {expected}")
    return Fault(**{name: value for name, value in body.items() if value is not None})


class State:
    """Counters, request log, faults and the valid key, shared by all threads."""

    def __init__(self, key: str):
        self.key = key
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._in_flight = dict.fromkeys(API_ROUTES, 0)
        self._peaks = dict.fromkeys(API_ROUTES, 0)
        self._log: deque[dict] = deque(maxlen=LOG_LENGTH)
        self._faults: list[Fault] = []
        self._stall_release = threading.Event()
        self._chance = random.Random()

    def count(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1

    def begin(self, route: str) -> None:
        with self._lock:
            self._in_flight[route] += 1
            self._peaks[route] = max(self._peaks[route], self._in_flight[route])

    def end(self, route: str) -> None:
        with self._lock:
            self._in_flight[route] -= 1

    def record(self, route: str, request: Request, status: int) -> None:
        entry = {
            "route": route,
            "path": request.target,
            "status": status,
            "has_key": "X-Avala-Api-Key" in request.headers,
            "range": request.headers.get("Range"),
        }
        with self._lock:
            self._log.append(entry)
            if status == 401:
                self._counts["unauthorized"] += 1
            # a cache tier's token is for the tier alone
            if "Proxy-Authorization" in request.headers:
                self._counts["proxy_auth"] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"counts": dict(self._counts), "peaks": dict(self._peaks), "requests": list(self._log)}

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, route: str) -> Fault | None:
        """The first queued fault that applies to this request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.route not in ("*", route):
                    continue
                if fault.probability is not None:
                    if self._chance.random() < fault.probability:
                        return fault
                    continue
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def stall_release(self) -> threading.Event:
        """The event that ends the stalls started now; set when faults are cleared."""
        with self._lock:
            return self._stall_release

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._stall_release.set()
            self._stall_release = threading.Event()

    def reset(self) -> None:
        self.clear_faults()
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._peaks = dict(self._in_flight)
            self._log.clear()
