"""Fetches cover images over HTTP(S) or from disk and turns them into 100x150 RGB JPEGs."""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import io
import os
import random
import threading
import time
import urllib.parse
import warnings

import requests
from PIL import Image
from tfx.dsl.io import fileio

from pipeline import configs

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class CoverError(Exception):
    """A cover that could not be used; `reason` is a short stable key for counting."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    connect_timeout_s: float = configs.CONNECT_TIMEOUT_S
    read_timeout_s: float = configs.READ_TIMEOUT_S
    max_retries: int = configs.MAX_RETRIES
    backoff_base_s: float = configs.BACKOFF_BASE_S
    backoff_max_s: float = configs.BACKOFF_MAX_S
    max_bytes: int = configs.MAX_IMAGE_BYTES
    max_pixels: int = configs.MAX_IMAGE_PIXELS
    connections: int = configs.CONNECTIONS_PER_WORKER
    width: int = configs.IMAGE_WIDTH
    height: int = configs.IMAGE_HEIGHT
    jpeg_quality: int = configs.JPEG_QUALITY


def make_session(connections: int) -> requests.Session:
    """One pooled session per worker; retries are ours, so the adapter makes none."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=connections, pool_maxsize=connections, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "bookcover-pipeline/0.1"
    return session


def read_local(path: str, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError as e:
        raise CoverError("missing_file", path) from e
    except OSError as e:
        raise CoverError("unreadable_file", f"{path}: {e}") from e
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
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def fetch_url(url: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    """The raw bytes behind a cover URL (http, https, file:// or a path)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url
        return read_local(path, cfg.max_bytes)
    if parsed.scheme not in ("http", "https"):
        raise CoverError("unsupported_scheme", url)
    for attempt in range(cfg.max_retries + 1):
        last_try = attempt == cfg.max_retries
        try:
            return _http_get(url, session, cfg)
        except _RetryableError as e:
            if last_try:
                raise CoverError(e.reason, f"{url}: {e.detail} after {attempt + 1} tries") from e
            time.sleep(backoff_delay(attempt, cfg, e.retry_after))
    raise AssertionError("unreachable")


class _RetryableError(CoverError):
    def __init__(self, reason: str, detail: str, retry_after: str | None = None):
        super().__init__(reason, detail)
        self.retry_after = retry_after


def _http_get(url: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    try:
        response = session.get(
            url, timeout=(cfg.connect_timeout_s, cfg.read_timeout_s), stream=True
        )
    except requests.Timeout as e:
        raise _RetryableError("timeout", str(e)) from e
    except requests.ConnectionError as e:
        raise _RetryableError("connection_error", str(e)) from e
    except requests.RequestException as e:
        raise CoverError("request_error", f"{url}: {e}") from e
    with response:
        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _RetryableError(
                f"http_{status}", f"HTTP {status}", response.headers.get("Retry-After")
            )
        if status >= 400:
            raise CoverError(f"http_{status}", url)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cfg.max_bytes:
            raise CoverError("too_large", f"{url} declares {declared} bytes")
        return _read_capped(response, url, cfg.max_bytes)


def _read_capped(response: requests.Response, url: str, max_bytes: int) -> bytes:
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise CoverError("too_large", f"{url} is over {max_bytes} bytes")
            chunks.append(chunk)
    except requests.RequestException as e:  # includes read timeouts mid-body
        raise _RetryableError(
            "timeout" if "timed out" in str(e) else "connection_error", str(e)
        ) from e
    return b"".join(chunks)


def to_cover_jpeg(data: bytes, cfg: FetchConfig) -> bytes:
    """Decodes any Pillow-readable image, guards size, converts to RGB, resizes, re-encodes."""
    with warnings.catch_warnings():
        # Pillow warns between max_pixels and 2x, and raises beyond; both are bombs to us.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = cfg.max_pixels
        try:
            image = Image.open(io.BytesIO(data))
            image.load()  # header-only opens accept truncated files
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise CoverError("decompression_bomb", str(e)) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise CoverError("not_an_image", str(e)) from e
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if image.mode in ("P", "PA", "LA", "RGBA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB").resize((cfg.width, cfg.height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=cfg.jpeg_quality)
    return out.getvalue()


def content_hash(jpeg: bytes) -> str:
    return hashlib.sha1(jpeg).hexdigest()


class CoverCache:
    """Processed covers keyed by URL (local or gs:// paths), so reruns download nothing twice."""

    def __init__(self, directory: str | None):
        self.directory = directory
        if directory:
            fileio.makedirs(directory)

    def _path(self, url: str) -> str:
        key = hashlib.sha1(url.encode("utf-8")).hexdigest()
        return os.path.join(self.directory, key[:2], key + ".jpg")

    def get(self, url: str) -> bytes | None:
        if not self.directory:
            return None
        path = self._path(url)
        if not fileio.exists(path):
            return None
        with fileio.open(path, "rb") as f:
            return f.read()

    def put(self, url: str, jpeg: bytes) -> None:
        if not self.directory:
            return
        path = self._path(url)
        fileio.makedirs(os.path.dirname(path))
        # Write then rename: a killed run never leaves half a file in the cache.
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with fileio.open(tmp, "wb") as f:
            f.write(jpeg)
        fileio.rename(tmp, path, overwrite=True)


def download_cover(
    url: str, session: requests.Session, cfg: FetchConfig, cache: CoverCache
) -> tuple[bytes, bool]:
    """The 100x150 JPEG for a cover URL and whether it came from the cache."""
    cached = cache.get(url)
    if cached is not None:
        return cached, True
    jpeg = to_cover_jpeg(fetch_url(url, session, cfg), cfg)
    cache.put(url, jpeg)
    return jpeg, False
