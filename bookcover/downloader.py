"""Turns a cover URL into the stored 100x150 RGB cover: policy checks, the cache, fetch, resize.

The parts live beside it: fetch_config.py (FetchConfig, CoverError),
fetching.py (HTTP(S) and files within one deadline, the URL policy applied),
cover_image.py (decoding and resizing), cover_cache.py (the cache).
"""

from __future__ import annotations

import requests

from bookcover.cover_cache import CoverCache
from bookcover.cover_image import checked_header, to_cover_image
from bookcover.fetch_config import CoverError, FetchConfig
from bookcover.fetching import checked_target, fetch_target, make_session

__all__ = [
    "CoverCache", "CoverError", "FetchConfig", "download_cover", "download_image", "make_session",
]  # fmt: skip


def download_cover(
    url: str, session: requests.Session, cfg: FetchConfig, cache: CoverCache
) -> tuple[bytes, bool]:
    """The stored cover (JPEG, or PNG if cfg.cover_format says so) for a cover URL and
    whether it came from the cache. The URL policy's checks that need no network come
    first: a cover cached under looser settings is not handed out under stricter ones."""
    target = checked_target(url, cfg)
    cached = cache.get(url)
    if cached is not None:
        return cached, True
    cover = to_cover_image(fetch_target(url, target, session, cfg), cfg)
    cache.put(url, cover)
    return cover, False


def download_image(url: str, session: requests.Session, cfg: FetchConfig) -> bytes:
    """For a reader that decodes and resizes images itself (the served model): the image
    as fetched, once its header names an accepted format within cfg.max_pixels. The same
    URL policy, deadline and limits as download_cover, without its decode, resize and
    re-encode (about 1.2 ms of CPU a cover); nothing is cached."""
    image = fetch_target(url, checked_target(url, cfg), session, cfg)
    checked_header(image, cfg.max_pixels)
    return image
