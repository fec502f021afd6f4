"""The versions a serving directory publishes, as TF Serving reads them: all-digit names.

Kept apart from the Pusher so that what only reads versions (the catalogue, DataGate,
housekeeping) does not import TFX's Pusher and, through it, TFMA.
"""

from __future__ import annotations

from tfx.dsl.io import fileio

# Where the Pusher assembles a version before its rename; TF Serving only loads all-digit
# names, so it never sees one half-copied.
STAGING_PREFIX = ".incomplete-"


def versions(serving_dir: str) -> list[int]:
    """The published versions, oldest first: all-digit names, as TF Serving reads them."""
    if not fileio.exists(serving_dir):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(serving_dir))
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())
