"""Reads a cover from a local path or a filesystem URI (gs://, s3://), bounded in size and time."""

from __future__ import annotations

import os
import stat

import tensorflow as tf
from tfx.dsl.io import fileio

from bookcover import url_policy
from bookcover.fetch_config import CoverError


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
