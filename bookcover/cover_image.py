"""Decodes an accepted cover image within its pixel limit and makes the stored 100x150 RGB cover."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from bookcover import constants
from bookcover.fetch_config import CoverError, FetchConfig


def checked_header(data: bytes, max_pixels: int) -> Image.Image:
    """The image, not yet decoded, if its header names one of constants.IMAGE_FORMATS
    within `max_pixels`.

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
    return image


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """The decoded image, once checked_header has accepted it."""
    image = checked_header(data, max_pixels)
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


def to_cover_image(data: bytes, cfg: FetchConfig) -> bytes:
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


def content_hash(cover: bytes) -> str:
    return hashlib.sha1(cover).hexdigest()
