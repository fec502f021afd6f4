"""Fetches cover images over HTTP(S) or from disk and turns them into 100x150 RGB JPEGs."""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import heapq
import io
import itertools
import logging
import os
import random
import re
import socket
import ssl
import stat
import threading
import time
import urllib.parse
import zlib

import numpy as np
import requests
import tensorflow as tf
import urllib3
from PIL import Image
from requests.adapters import HTTPAdapter
from tfx.dsl.io import fileio
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs, resolve_ssl_version

from bookcover import constants, url_policy

# "<_io.BytesIO object at 0x7f...>" and the like say nothing to a reader of failures.csv.
OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-fA-F]+>(, )?")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024


class CoverError(Exception):
    """A cover that could not be used; `reason` is a short stable key for counting."""

    def __init__(self, reason: str, detail: str = ""):
        detail = OBJECT_REPR.sub("", detail)
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    connect_timeout_s: float = constants.CONNECT_TIMEOUT_S
    read_timeout_s: float = constants.READ_TIMEOUT_S
    # The whole of one cover: name resolution, connecting, every attempt, redirect
    # and wait between attempts, or the read of a local file. Per-read timeouts
    # never fire against a server that drips a byte at a time.
    deadline_s: float = constants.DOWNLOAD_DEADLINE_S
    max_retries: int = constants.MAX_RETRIES
    backoff_base_s: float = constants.BACKOFF_BASE_S
    backoff_max_s: float = constants.BACKOFF_MAX_S
    max_bytes: int = constants.MAX_IMAGE_BYTES
    max_pixels: int = constants.MAX_IMAGE_PIXELS
    connections: int = constants.CONNECTIONS_PER_WORKER
    width: int = constants.IMAGE_WIDTH
    height: int = constants.IMAGE_HEIGHT
    jpeg_quality: int = constants.JPEG_QUALITY
    cover_format: str = constants.COVER_FORMAT
    # What a URL may reach (bookcover/url_policy.py). Link-local and metadata
    # addresses are always refused; private ones unless allowed or listed.
    allow_private_addresses: bool = True
    allowed_networks: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # empty: any host
    allow_local_files: bool = True
    # Local paths and filesystem URIs must lie under covers_root (default: base_dir);
    # relative ones resolve against base_dir, which CoverExampleGen sets to the CSV's folder.
    covers_root: str = ""
    base_dir: str = ""

    def __post_init__(self):
        # JSON (the exec property) hands lists back; a frozen config keeps tuples.
        for name in ("allowed_networks", "allowed_hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.cover_format not in constants.COVER_FORMATS:
            raise ValueError(
                f"cover format {self.cover_format!r}; known: {', '.join(constants.COVER_FORMATS)}"
            )


class _Deadlines:
    """One watchdog thread that shuts a socket down when its download's deadline passes.

    A blocked read then returns at once, wherever it is (headers or body), and
    the download fails as `deadline`. Each download thread sets its deadline
    before it asks for a connection; a new connection registers its socket here
    before it connects (so a TLS handshake that never ends is cut too), and a
    pooled one again when it sends a request.
    """

    def __init__(self):
        self._local = threading.local()
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, deadline: float) -> None:
        self._local.deadline, self._local.watches = deadline, []

    def remaining(self) -> float | None:
        """Seconds left to this thread's download, None outside one."""
        deadline = getattr(self._local, "deadline", None)
        return None if deadline is None else deadline - time.monotonic()

    def finish(self) -> bool:
        """Stops watching this thread's sockets; True when the deadline had passed."""
        with self._wake:
            for watch in getattr(self._local, "watches", []):
                self._live.discard(watch)
        deadline = getattr(self._local, "deadline", None)
        self._local.deadline, self._local.watches = None, []
        return deadline is not None and time.monotonic() >= deadline

    def watch(self, sock: socket.socket | None) -> None:
        deadline = getattr(self._local, "deadline", None)
        if sock is None or deadline is None:
            return
        with self._wake:
            watch = next(self._ids)
            self._live.add(watch)
            self._local.watches.append(watch)
            heapq.heappush(self._heap, (deadline, watch, sock))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cover-deadlines")
                self._thread.daemon = True
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, watch, sock = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(watch)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed


DEADLINES = _Deadlines()


class _Current(threading.local):
    """The settings and resolver of the download this thread is doing."""

    cfg: FetchConfig | None = None
    resolver: url_policy.Resolver = socket.getaddrinfo


CURRENT = _Current()


def open_socket(connection: HTTPConnection) -> socket.socket:
    """urllib3's connect with the URL policy and the deadline: resolve within the time
    left, refuse what the address rules refuse, and watch the socket before connecting."""
    cfg = CURRENT.cfg or FetchConfig()
    host, port = connection._dns_host, connection.port
    remaining = DEADLINES.remaining()
    budget = cfg.connect_timeout_s if remaining is None else remaining
    try:
        infos = url_policy.resolve(host, port, budget, CURRENT.resolver)
    except TimeoutError as e:
        raise ConnectTimeoutError(connection, f"{host}: {e}") from None
    except OSError as e:
        raise NewConnectionError(connection, f"{host} does not resolve: {e}") from None
    allowed = [
        info
        for info in infos
        if url_policy.address_refusal(info[4][0], cfg.allow_private_addresses, cfg.allowed_networks)
        is None
    ]
    if not allowed:
        raise CoverError("forbidden_address", "not fetched: the URL policy refuses its address")
    error: OSError | None = None
    for family, kind, proto, _, address in allowed:
        sock = socket.socket(family, kind, proto)
        DEADLINES.watch(sock)
        for option in connection.socket_options or ():
            sock.setsockopt(*option)
        if connection.source_address:
            sock.bind(connection.source_address)
        remaining = DEADLINES.remaining()
        timeout = cfg.connect_timeout_s if remaining is None else remaining
        sock.settimeout(max(min(timeout, cfg.connect_timeout_s), 0.001))
        try:
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise ConnectTimeoutError(connection, f"{host}: connect timed out") from None
        except OSError as e:
            sock.close()
            error = e
            continue
        if isinstance(connection.timeout, (int, float)):
            sock.settimeout(connection.timeout)
        return sock
    raise NewConnectionError(connection, f"Failed to establish a new connection: {error}")


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self):
        return open_socket(self)

    def getresponse(self, *args, **kwargs):
        DEADLINES.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedSSLSocket(ssl.SSLSocket):
    """Wrapping detaches the plain socket the watchdog holds: watch the TLS one too,
    before its handshake, which a server can stall or drip as it can a body."""

    def do_handshake(self, *args, **kwargs):
        DEADLINES.watch(self)
        return super().do_handshake(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        return open_socket(self)

    def connect(self):
        if self.ssl_context is None:
            # urllib3's own default context (connect() would make the same), with
            # the watched socket class.
            self.ssl_context = create_urllib3_context(
                ssl_version=resolve_ssl_version(self.ssl_version),
                cert_reqs=resolve_cert_reqs(self.cert_reqs),
            )
            if not (self.ca_certs or self.ca_cert_dir or self.ca_cert_data):
                self.ssl_context.load_default_certs()
            self.ssl_context.sslsocket_class = _WatchedSSLSocket
        return super().connect()

    def getresponse(self, *args, **kwargs):
        DEADLINES.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class CoverSession(requests.Session):
    """A requests session that also carries the name resolver its connections use
    (tests hand in their own, to map names to 127.0.0.x without DNS)."""

    resolver: url_policy.Resolver = staticmethod(socket.getaddrinfo)


def make_session(connections: int, resolver: url_policy.Resolver | None = None) -> requests.Session:
    """One pooled session per worker. Retries and redirects are ours, so the adapter
    makes none; every socket it opens is checked against the URL policy and watched
    against its download's deadline."""
    session = CoverSession()
    if resolver is not None:
        session.resolver = resolver
    adapter = HTTPAdapter(pool_connections=connections, pool_maxsize=connections, max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": _WatchedHTTPPool,
        "https": _WatchedHTTPSPool,
    }
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "bookcover-pipeline/0.1"
    # Bodies are capped on the bytes we keep: ask for them uncompressed.
    session.headers["Accept-Encoding"] = "identity"
    return session


def local_location(url: str) -> str | None:
    """The path or filesystem URI a cover location names, None for http(s)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return url
    if parsed.scheme not in ("http", "https") and (
        parsed.scheme in tf.io.gfile.get_registered_schemes()  # gs://, s3://, ...
    ):
        return url
    return None


def checked_target(url: str, cfg: FetchConfig) -> str:
    """What the URL policy allows to be read for `url`, before anything is fetched or
    looked up in the cache: the local file it names, or the URL itself for http(s).

    Refusals say which rule refused and nothing about the target."""
    location = local_location(url)
    if location is not None:
        if not cfg.allow_local_files:
            raise CoverError("forbidden_local_file", "not read: local files are not allowed")
        target = url_policy.local_target(location, cfg.base_dir, cfg.covers_root)
        if target is None:
            raise CoverError("outside_covers_root", "not read: outside the covers root")
        return target
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise CoverError("unsupported_scheme", url)
    _check_host(parsed.hostname or "", cfg)
    return url


def _check_host(host: str, cfg: FetchConfig) -> None:
    """The rules a URL's host meets before any connection: the allow-list, and for an
    address written as one, the address rules."""
    if url_policy.host_refusal(host, cfg.allowed_hosts):
        raise CoverError("forbidden_host", "not fetched: the host is not in the allowed hosts")
    address = url_policy.literal_address(host)
    if address is not None and url_policy.address_refusal(
        address, cfg.allow_private_addresses, cfg.allowed_networks
    ):
        raise CoverError("forbidden_address", "not fetched: the URL policy refuses its address")


def read_local(path: str, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """A file's bytes through TFX's file I/O: local paths and gs://, s3:// or any other
    filesystem TensorFlow knows, within `timeout_s` (a stalled mount fails on time,
    leaving its thread behind). FIFOs, devices and folders are refused unopened."""
    if timeout_s is None:
        return _read_file(path, max_bytes)
    answer = url_policy.call_within(lambda: _read_file(path, max_bytes), timeout_s)
    if answer is None:
        raise CoverError("deadline", f"{path}: not read in {timeout_s:.1f} s")
    return answer[0]


def _read_file(path: str, max_bytes: int) -> bytes:
    if not url_policy.has_scheme(path):
        return _read_plain_file(path, max_bytes)
    try:
        if not fileio.exists(path):
            raise CoverError("missing_file", path)
        with fileio.open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except CoverError:
        raise
    except (OSError, tf.errors.OpError) as e:
        raise CoverError("unreadable_file", f"{path}: {e}") from e
    if len(data) > max_bytes:
        raise CoverError("too_large", f"{path} is over {max_bytes} bytes")
    return data


def _read_plain_file(path: str, max_bytes: int) -> bytes:
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CoverError("missing_file", path) from None
    except OSError as e:
        raise CoverError("unreadable_file", f"{path}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CoverError("not_a_file", f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise CoverError("unreadable_file", f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise CoverError("too_large", f"{path} is over {max_bytes} bytes")
    return data


def backoff_delay(attempt: int, cfg: FetchConfig, retry_after: str | None = None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins when given."""
    if retry_after:
        seconds = _parse_retry_after(retry_after)
        if seconds is not None:
            return min(seconds, cfg.backoff_max_s)
    ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if plain_number(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def plain_number(value: str) -> bool:
    """ASCII digits only: str.isdigit also accepts '²' and other digits int() refuses."""
    return value.isascii() and value.isdigit()


def fetch_url(url: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    """The raw bytes behind a cover URL (http, https, file://, a path or a filesystem
    URI), within cfg.deadline_s in all and as the URL policy allows."""
    target = checked_target(url, cfg)
    if local_location(url) is not None:
        return read_local(target, cfg.max_bytes, cfg.deadline_s)
    deadline = time.monotonic() + cfg.deadline_s
    CURRENT.cfg, CURRENT.resolver = cfg, getattr(session, "resolver", socket.getaddrinfo)
    DEADLINES.start(deadline)
    try:
        return _fetch_with_retries(url, session, cfg, deadline)
    finally:
        DEADLINES.finish()
        CURRENT.cfg = None


def _fetch_with_retries(
    url: str, session: requests.Session, cfg: FetchConfig, deadline: float
) -> bytes:
    for attempt in range(cfg.max_retries + 1):
        try:
            return _http_get(url, session, cfg, deadline)
        except _RetryableError as e:
            tries = f"after {attempt + 1} tries"
            if attempt == cfg.max_retries:
                raise CoverError(e.reason, f"{url}: {e.detail} {tries}") from e
            delay = backoff_delay(attempt, cfg, e.retry_after)
            if time.monotonic() + delay >= deadline:
                raise CoverError(
                    e.reason,
                    f"{url}: {e.detail} {tries}; the next, {delay:.1f} s later, would pass "
                    f"the {cfg.deadline_s:g} s deadline",
                ) from e
            time.sleep(delay)
    raise AssertionError("unreachable")


class _RetryableError(CoverError):
    def __init__(self, reason: str, detail: str, retry_after: str | None = None):
        super().__init__(reason, detail)
        self.retry_after = retry_after


def _http_get(url: str, session: requests.Session, cfg: FetchConfig, deadline: float) -> bytes:
    """One attempt, redirects included; `deadline` is the whole cover's."""
    past = CoverError("deadline", f"{url}: not done in {cfg.deadline_s:g} s")
    try:
        data = _follow_redirects(url, session, cfg)
    except CoverError:
        if time.monotonic() >= deadline:
            raise past from None
        raise
    # A socket shut at the deadline can also look like a body that just ended.
    if time.monotonic() >= deadline:
        raise past
    return data


def _follow_redirects(url: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    """Our own redirect loop: requests would read (and decompress) every 3xx body in
    full before following it, past any cap; here 3xx bodies are never read."""
    for _ in range(MAX_REDIRECTS + 1):
        with _request(url, session, cfg) as response:
            status = response.status_code
            if status not in REDIRECT_STATUS:
                return _read_body(response, url, cfg)
            location = response.headers.get("Location")
        if not location:
            raise CoverError("bad_redirect", f"{url}: HTTP {status} without a Location")
        url = urllib.parse.urljoin(url, location)
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise CoverError("bad_redirect", f"redirect to {url}: only http(s) is followed")
        _check_host(urllib.parse.urlparse(url).hostname or "", cfg)
    raise CoverError("too_many_redirects", f"{url}: more than {MAX_REDIRECTS} redirects")


def _request(url: str, session: requests.Session, cfg: FetchConfig) -> requests.Response:
    # The adapter, not session.get: even with allow_redirects=False, requests'
    # Session reads a 3xx body in full to prepare the next request.
    prepared = session.prepare_request(requests.Request("GET", url))
    settings = session.merge_environment_settings(url, {}, True, None, None)
    settings["stream"] = True
    try:
        return session.get_adapter(url).send(
            prepared, timeout=(cfg.connect_timeout_s, cfg.read_timeout_s), **settings
        )
    except requests.Timeout as e:
        raise _RetryableError("timeout", f"{url}: {e}") from e
    except requests.ConnectionError as e:
        raise _RetryableError("connection_error", f"{url}: {e}") from e
    except requests.RequestException as e:
        raise CoverError("request_error", f"{url}: {e}") from e


def _read_body(response: requests.Response, url: str, cfg: FetchConfig) -> bytes:
    status = response.status_code
    if status in RETRYABLE_STATUS:
        raise _RetryableError(
            f"http_{status}", f"HTTP {status}", response.headers.get("Retry-After")
        )
    if status >= 400:
        raise CoverError(f"http_{status}", url)
    declared = response.headers.get("Content-Length", "").strip()
    if declared and not plain_number(declared):
        raise CoverError("bad_content_length", f"{url}: Content-Length {declared[:40]!r}")
    if declared and int(declared) > cfg.max_bytes:
        raise CoverError("too_large", f"{url} declares {declared} bytes")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        raise CoverError("unsupported_encoding", f"{url} is sent as {encoding!r}")
    # Raw bytes: urllib3 would decompress each read in full, whatever its size.
    decompressor = None if encoding in ("identity", "") else zlib.decompressobj(wbits=47)
    chunks, size = [], 0
    try:
        for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
            if decompressor is not None:
                chunk = decompressor.decompress(chunk, cfg.max_bytes + 1 - size)
                if decompressor.unconsumed_tail:
                    raise CoverError("too_large", f"{url} decompresses to over {cfg.max_bytes}")
            size += len(chunk)
            if size > cfg.max_bytes:
                raise CoverError("too_large", f"{url} is over {cfg.max_bytes} bytes")
            chunks.append(chunk)
    except zlib.error as e:
        raise CoverError(
            "bad_encoding", f"{url}: {encoding} body does not decompress: {e}"
        ) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
        # Raw reads raise urllib3's errors: read timeouts mid-body, a socket the
        # deadline shut (then reported as `deadline` by _http_get).
        timed_out = "timed out" in str(e).lower()
        reason = "timeout" if timed_out else "connection_error"
        raise _RetryableError(reason, f"{url}: {e}") from e
    if decompressor is None and declared and size < int(declared):
        raise _RetryableError("incomplete_body", f"{url}: {size} of {declared} bytes")
    return b"".join(chunks)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """The decoded image, if it is one of constants.IMAGE_FORMATS within `max_pixels`.

    The size comes from the header before any pixel is decoded, and no
    process-wide setting is touched (downloads run in many threads); only the
    accepted formats' decoders are tried, so no other (EPS: Ghostscript) runs.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=constants.IMAGE_FORMATS)
    except Image.DecompressionBombError as e:  # Pillow's own, far larger, limit
        raise CoverError("decompression_bomb", str(e)) from None
    except Image.UnidentifiedImageError:
        found = _sniff_format(data)
        if found:
            raise CoverError(
                "unsupported_format",
                f"{found}; accepted: {', '.join(constants.IMAGE_FORMATS)}",
            ) from None
        raise CoverError("not_an_image", f"{len(data)} bytes in no known image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise CoverError("not_an_image", str(e)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise CoverError(
            "decompression_bomb", f"{width}x{height} pixels, over the limit of {max_pixels}"
        )
    try:
        image.load()  # header-only opens accept truncated files
    except (OSError, SyntaxError, ValueError) as e:
        raise CoverError("not_an_image", str(e)) from None
    return image


def _sniff_format(data: bytes) -> str | None:
    """The name of an image format Pillow knows but the project does not accept."""
    try:
        return Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - only naming what was refused
        return None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as the served model decodes the same file (models/preprocessing.decode_covers):
    transparency composited on white, 16-bit samples reduced to their high byte."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # convert("L") would clip every 16-bit sample above 255 to white.
        samples = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(samples, 0, 255).astype(np.uint8), "L")
    if image.mode in ("P", "PA", "LA", "RGBA") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def to_cover_jpeg(data: bytes, cfg: FetchConfig) -> bytes:
    """Decodes an accepted image, guards its size, converts to RGB, resizes, re-encodes
    (as JPEG unless cfg.cover_format says PNG)."""
    image = to_rgb(open_image(data, cfg.max_pixels))
    image = image.resize((cfg.width, cfg.height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if cfg.cover_format == "PNG":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=cfg.jpeg_quality)
    return out.getvalue()


def content_hash(jpeg: bytes) -> str:
    return hashlib.sha1(jpeg).hexdigest()


class CoverCache:
    """Processed covers keyed by URL (local or gs:// paths), so reruns download nothing twice.

    Entries appear whole (written to a temporary name, flushed to disk, renamed) and
    are checked when read: one that does not decode as a cover of this size and
    format (a power cut's empty or truncated file) is removed and downloaded again.
    """

    def __init__(
        self,
        directory: str | None,
        cover_format: str = constants.COVER_FORMAT,
        size: tuple[int, int] = (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT),
    ):
        self.directory = directory
        self.cover_format = cover_format
        self.size = size
        self.suffix = ".png" if cover_format == "PNG" else ".jpg"
        self.dropped = 0
        if directory:
            fileio.makedirs(directory)

    def _path(self, url: str) -> str:
        key = hashlib.sha1(url.encode("utf-8")).hexdigest()
        return os.path.join(self.directory, key[:2], key + self.suffix)

    def get(self, url: str) -> bytes | None:
        if not self.directory:
            return None
        path = self._path(url)
        if not fileio.exists(path):
            return None
        with fileio.open(path, "rb") as f:
            data = f.read()
        if self._valid(data):
            return data
        self.dropped += 1
        logging.warning("cover cache: %s does not decode as a cover; downloading again", path)
        try:
            fileio.remove(path)
        except (OSError, tf.errors.OpError, fileio.NotFoundError):
            pass  # another worker removed or replaced it first
        return None

    def _valid(self, data: bytes) -> bool:
        try:
            image = Image.open(io.BytesIO(data), formats=(self.cover_format,))
            image.load()
        except Exception:  # noqa: BLE001 - any decoder error means a bad entry
            return False
        return image.size == self.size and image.mode == "RGB"

    def put(self, url: str, jpeg: bytes) -> None:
        if not self.directory:
            return
        path = self._path(url)
        fileio.makedirs(os.path.dirname(path))
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        if url_policy.has_scheme(path):  # object stores publish an object whole on close
            with fileio.open(tmp, "wb") as f:
                f.write(jpeg)
            fileio.rename(tmp, path, overwrite=True)
            return
        with open(tmp, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name says they are
        os.replace(tmp, path)


def download_cover(
    url: str, session: requests.Session, cfg: FetchConfig, cache: CoverCache
) -> tuple[bytes, bool]:
    """The 100x150 JPEG for a cover URL and whether it came from the cache. The URL
    policy's checks that need no network come first: a cover cached under looser
    settings is not handed out under stricter ones."""
    checked_target(url, cfg)
    cached = cache.get(url)
    if cached is not None:
        return cached, True
    jpeg = to_cover_jpeg(fetch_url(url, session, cfg), cfg)
    cache.put(url, jpeg)
    return jpeg, False
