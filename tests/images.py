"""Small test images built in memory."""

from __future__ import annotations

import io
import struct

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


def _first_frame_at(gif: bytes) -> int:
    """Where the first image descriptor (0x2C) of a GIF starts."""
    flags = gif[10]
    position = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[position] == 0x21:  # extensions: label, then sub-blocks
        position += 2
        while gif[position]:
            position += 1 + gif[position]
        position += 1
    assert gif[position] == 0x2C
    return position


def gif_of_frames(frames: int, size=(2000, 2000)) -> bytes:
    """A GIF whose every one of `frames` frames fills its canvas (TensorFlow's decoder
    reads them all): one encoded frame, repeated."""
    one = encode(Image.new("P", size, 1), "GIF")
    start = _first_frame_at(one)
    return one[:start] + one[start:-1] * frames + b";"


def gif_frame_outside_canvas(canvas=(10, 10), frame=(6000, 6000)) -> bytes:
    """A GIF whose header declares a small canvas and whose one frame is far larger."""
    data = bytearray(encode(Image.new("P", frame, 1), "GIF"))
    data[6:10] = struct.pack("<HH", *canvas)
    return bytes(data)


def gif_of_empty_extensions(count: int) -> bytes:
    """A 10x10 GIF header followed by `count` empty extension blocks (3 bytes each)."""
    return b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b"\x21\xf9\x00" * count + b";"


def bmp_declaring(size=(6000, 6000)) -> bytes:
    """A 10x10 BMP whose header declares `size`: the pixels it promises are not there."""
    data = bytearray(encode(Image.new("RGB", (10, 10), (1, 2, 3)), "BMP"))
    data[18:26] = struct.pack("<ii", *size)
    return bytes(data)
