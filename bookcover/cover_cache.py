"""The download cache: processed covers keyed by URL, written whole and checked when read."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading

import tensorflow as tf
from PIL import Image
from tfx.dsl.io import fileio

from bookcover import constants, url_policy


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

    def put(self, url: str, cover: bytes) -> None:
        if not self.directory:
            return
        path = self._path(url)
        fileio.makedirs(os.path.dirname(path))
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        if url_policy.has_scheme(path):  # object stores publish an object whole on close
            with fileio.open(tmp, "wb") as f:
                f.write(cover)
            fileio.rename(tmp, path, overwrite=True)
            return
        with open(tmp, "wb") as f:
            f.write(cover)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name says they are
        os.replace(tmp, path)
