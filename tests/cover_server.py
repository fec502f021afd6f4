"""A real HTTP server on 127.0.0.1 that serves covers and misbehaves on purpose."""

from __future__ import annotations

import collections
import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable

from bookcover.downloader import FetchConfig

Handler = Callable[[http.server.BaseHTTPRequestHandler, int], None]

# Short timeouts and backoff so misbehaviour tests take seconds, a cap they can exceed.
FAST_FETCH = FetchConfig(
    connect_timeout_s=1.0,
    read_timeout_s=0.5,
    max_retries=2,
    backoff_base_s=0.01,
    backoff_max_s=2.0,
    max_bytes=150_000,
    connections=4,
)


class CoverServer:
    """Routes path -> handler(request, attempt); counts requests per path."""

    def __init__(self, host: str = "127.0.0.1", tls: tuple[str, str] | None = None):
        self.routes: dict[str, Handler] = {}
        self.requests: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        server = self

        class RequestHandler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                with server._lock:
                    server.requests[self.path] += 1
                    attempt = server.requests[self.path]
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self, attempt)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer((host, 0), RequestHandler)
        self._httpd.daemon_threads = True
        scheme = "http"
        if tls:  # (certificate file, key file): serve HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.port = self._httpd.server_address[1]
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def send_bytes(data: bytes, content_type: str = "image/jpeg", status: int = 200) -> Handler:
    def handler(request, attempt):
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    return handler


def send_status(status: int, headers: dict | None = None) -> Handler:
    def handler(request, attempt):
        request.send_response(status)
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return handler


def fail_then(first: Handler, then: Handler, failures: int = 1) -> Handler:
    def handler(request, attempt):
        (first if attempt <= failures else then)(request, attempt)

    return handler


def slow(delay_s: float, then: Handler) -> Handler:
    def handler(request, attempt):
        time.sleep(delay_s)
        then(request, attempt)

    return handler


def redirect(location: str) -> Handler:
    return send_status(302, {"Location": location})


def drip(interval_s: float, declared_bytes: int = 10_000, headers_too: bool = False) -> Handler:
    """Promises a body and sends it a byte every `interval_s`, for as long as it is read;
    with `headers_too`, drips the header block itself."""

    def handler(request, attempt):
        if headers_too:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n":
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(interval_s)
        request.send_response(200)
        request.send_header("Content-Type", "image/jpeg")
        request.send_header("Content-Length", str(declared_bytes))
        request.end_headers()
        request.wfile.flush()
        for _ in range(declared_bytes):
            request.wfile.write(b"\xff")
            request.wfile.flush()
            time.sleep(interval_s)

    return handler


def send_with_body(status: int, body: bytes, headers: dict) -> Handler:
    """Any status with a body (e.g. a redirect that carries one) and its headers."""

    def handler(request, attempt):
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handler


def echo_headers() -> Handler:
    """Answers with the request's headers as text (to see what the client asked for)."""

    def handler(request, attempt):
        body = str(request.headers).encode()
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handler


def throwaway_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, valid for a day: (cert file, key file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = f"{directory}/cert.pem", f"{directory}/key.pem"
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_file, key_file


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never says a byte: a TLS server whose
    handshake never completes, or an HTTP server that never answers."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self):
        self._socket.close()
        for connection in self.accepted:
            connection.close()


class FullBacklog:
    """A port on 127.0.0.1 whose accept queue is full and never drained: the kernel
    drops new SYNs, so a connect there never completes (a host that stalls before
    any request byte can be sent)."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self._socket.getsockname()[1]
        self._queued = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self):
        self._queued.close()
        self._socket.close()
