"""What fetching one cover may do (FetchConfig), and CoverError, the failure counted by reason."""

from __future__ import annotations

import dataclasses
import re

from bookcover import constants

# "<_io.BytesIO object at 0x7f...>" and the like say nothing to a reader of failures.csv.
OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-fA-F]+>(, )?")


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
