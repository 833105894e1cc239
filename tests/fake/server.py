# The fake's HTTP/1.1 server: threads, keep-alive, TLS handshakes off the accept
# loop, and the faults that are in how the bytes go out (stall, truncate, rate).

from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .api import FakeAvala
from .control import Control
from .messages import Request, Response
from .state import Fault

STALL_SECONDS = 3600
RATE_CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    """Moves requests into FakeAvala (or Control) and answers back, keep-alive."""

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
        if target.path.startswith("/_fake/"):
            self.deliver(self.server.control.answer(request), None)
        else:
            self.deliver(*self.server.app.public(request))

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

    def __init__(self, address: tuple[str, int], app: FakeAvala, control: Control, quiet: bool,
                 tls: ssl.SSLContext | None = None):
        self.app = app
        self.control = control
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
