"""Small test images built in memory."""

from __future__ import annotations

import io

from PIL import Image


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def jpeg(size=(146, 220), color=(200, 40, 40), mode="RGB") -> bytes:
    return encode(Image.new(mode, size, color), "JPEG")


def png(size=(146, 220), color=(20, 160, 40, 255)) -> bytes:
    return encode(Image.new("RGBA", size, color), "PNG")


def bomb_png(side: int = 9000) -> bytes:
    """A tiny file that decodes to side*side pixels (a decompression bomb)."""
    return encode(Image.new("1", (side, side), 0), "PNG")
