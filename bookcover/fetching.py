"""Fetches a cover's raw bytes over HTTP(S) or from a file, as the URL policy allows, on time.

Every connection resolves its host itself and checks each address at connect
time (bookcover/url_policy.py); one watchdog thread shuts down the socket of a
download whose deadline passed, wherever it blocks (name resolution, connect,
TLS handshake, headers or body). Retries, backoff and redirects are ours.
"""

from __future__ import annotations

import email.utils
import heapq
import itertools
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
import zlib

import requests
import tensorflow as tf
import urllib3
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs, resolve_ssl_version

from bookcover import url_policy
from bookcover.fetch_config import CoverError, FetchConfig
from bookcover.local_files import read_local

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
# Hosts whose environment settings and prepared headers a session keeps at once.
MAX_HOSTS_REMEMBERED = 1024


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


class _CoverAdapter(HTTPAdapter):
    """requests' adapter, less the cookie jar and text encoding it reads from every
    answer: a cover's download uses neither."""

    def build_response(self, req: requests.PreparedRequest, resp) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw, response.reason, response.url = resp, resp.reason, req.url
        response.request, response.connection = req, self
        return response


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
    adapter = _CoverAdapter(pool_connections=connections, pool_maxsize=connections, max_retries=0)
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


def _plainly_remote(url: str) -> bool:
    """An http(s) URL by its first characters, without parsing it (local_location's
    answer for most covers, at a fraction of its cost)."""
    return url[:8].lower().startswith(("http://", "https://"))


def checked_target(url: str, cfg: FetchConfig) -> str:
    """What the URL policy allows to be read for `url`, before anything is fetched or
    looked up in the cache: the local file it names, or the URL itself for http(s).

    Refusals say which rule refused and nothing about the target."""
    location = None if _plainly_remote(url) else local_location(url)
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
    return fetch_target(url, checked_target(url, cfg), session, cfg)


def fetch_target(url: str, target: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    """fetch_url for a URL whose policy checks passed: `target` is checked_target's answer."""
    if not _plainly_remote(url) and local_location(url) is not None:
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


def _environment(url: str, site: str, session: requests.Session) -> tuple[dict, str | None, object]:
    """What requests reads from the environment for a URL: proxies (after no_proxy), a CA
    bundle named by REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, ~/.netrc credentials. Read once
    per `site` (the URL's scheme://netloc) of a session: reading them for every request
    cost about 100 us of CPU a cover, and they do not change during a run."""
    key = (site, session.trust_env)
    known = _remembered(session, "_environment")
    if key not in known:
        if session.trust_env:
            proxies = requests.utils.get_environ_proxies(url)
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            known[key] = (proxies, bundle, requests.utils.get_netrc_auth(url))
        else:
            known[key] = ({}, None, None)
    return known[key]


def _remembered(session: requests.Session, name: str) -> dict:
    """A session's memo of what it read per host, emptied past MAX_HOSTS_REMEMBERED hosts:
    a CSV of a million hosts must not make it hold a million entries."""
    known = session.__dict__.setdefault(name, {})
    if len(known) >= MAX_HOSTS_REMEMBERED:
        known.clear()
    return known


def _prepared_get(url: str, session: requests.Session) -> tuple[requests.PreparedRequest, dict]:
    """The GET and the adapter's settings that session.prepare_request and
    session.merge_environment_settings would make (the session's headers, proxies,
    verify and cert; the environment's proxies, CA bundle and credentials), without
    merging the session's cookie jar and hooks, which stay empty: responses go through
    the adapter, which stores no cookies."""
    parts = urllib.parse.urlsplit(url)
    site = f"{parts.scheme}://{parts.netloc}"
    proxies, bundle, auth = _environment(url, site, session)
    settings = {
        "proxies": merge_setting(dict(proxies), session.proxies),
        "verify": merge_setting(bundle, session.verify),
        "cert": session.cert,
        "stream": True,
    }
    # The headers (the session's, credentials of the URL or ~/.netrc) are the same for
    # every URL of a host while the session's headers are: prepared once, then only the
    # URL is (requests' whole preparation was a fifth of a request's client CPU).
    key = (site, auth, tuple(session.headers.items()))
    known = _remembered(session, "_prepared_headers")
    headers = known.get(key)
    if headers is None:
        prepared = requests.PreparedRequest()
        prepared.prepare(method="GET", url=url, headers=session.headers, auth=auth)
        known[key] = prepared.headers.copy()
        return prepared, settings
    prepared = requests.PreparedRequest()
    prepared.method, prepared.headers = "GET", headers.copy()
    prepared.prepare_url(url, None)
    return prepared, settings


def _request(url: str, session: requests.Session, cfg: FetchConfig) -> requests.Response:
    # The adapter, not session.get: even with allow_redirects=False, requests'
    # Session reads a 3xx body in full to prepare the next request.
    prepared, settings = _prepared_get(url, session)
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
