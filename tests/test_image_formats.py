"""One list of image formats and one decoding semantics, in ingestion and in serving.

Ingestion (bookcover/downloader.py, Pillow) stores every cover as a 100x150 RGB
JPEG; serving decodes whatever a client sends in the Transform graph
(models/preprocessing.decode_covers). A file must mean the same picture to
both: the same formats accepted or refused, transparency composited on white,
16-bit samples reduced to their high byte.
"""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from bookcover import constants, cover_image, downloader
from models import preprocessing
from tests import images

CFG = downloader.FetchConfig()


def served(data: bytes) -> np.ndarray:
    return preprocessing.decode_covers(tf.constant([data])).numpy()[0]


def ingested(data: bytes) -> np.ndarray:
    """The cover as training sees it: ingestion's JPEG, decoded by the same graph."""
    return served(cover_image.to_cover_image(data, CFG))


ACCEPTED = {
    "JPEG": images.jpeg(color=(200, 60, 30)),
    "PNG": images.encode(Image.new("RGB", (120, 180), (30, 200, 60)), "PNG"),
    "GIF": images.encode(Image.new("RGB", (120, 180), (40, 40, 220)), "GIF"),
    "BMP": images.encode(Image.new("RGB", (120, 180), (90, 10, 160)), "BMP"),
}
REFUSED = {
    "WEBP": images.encode(Image.new("RGB", (120, 180), (200, 60, 30)), "WEBP"),
    "TIFF": images.encode(Image.new("RGB", (120, 180), (200, 60, 30)), "TIFF"),
}


def test_the_accepted_formats_are_one_list():
    assert set(ACCEPTED) == set(constants.IMAGE_FORMATS)


@pytest.mark.parametrize("fmt", sorted(ACCEPTED))
def test_accepted_formats_decode_alike_on_both_sides(fmt):
    data = ACCEPTED[fmt]
    np.testing.assert_allclose(served(data), ingested(data), atol=0.03)


@pytest.mark.parametrize("fmt", sorted(REFUSED))
def test_other_formats_are_refused_on_both_sides(fmt):
    with pytest.raises(downloader.CoverError) as e:
        cover_image.to_cover_image(REFUSED[fmt], CFG)
    assert e.value.reason == "unsupported_format" and fmt in str(e.value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image in an accepted"):
        served(REFUSED[fmt])


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (120, 180), (255, 0, 0, 128)),
        Image.new("LA", (120, 180), (0, 64)),
        Image.new("RGBA", (120, 180), (0, 0, 255, 0)),
    ],
    ids=["half-transparent-red", "grey-alpha", "fully-transparent"],
)
def test_transparency_is_composited_on_white_on_both_sides(image):
    data = images.encode(image, "PNG")
    expected = (
        np.array(
            Image.alpha_composite(
                Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA")
            ).convert("RGB")
        )[0, 0]
        / 255.0
    )
    np.testing.assert_allclose(served(data)[0, 0], expected, atol=0.01)
    np.testing.assert_allclose(ingested(data)[0, 0], expected, atol=0.03)


def test_sixteen_bit_grey_keeps_its_high_byte_on_both_sides():
    data = images.encode(Image.fromarray(np.full((180, 120), 0x8040, np.uint16)), "PNG")
    expected = 0x80 / 255.0  # clipping would make it white (1.0)
    np.testing.assert_allclose(served(data), expected, atol=0.01)
    np.testing.assert_allclose(ingested(data), expected, atol=0.03)


def test_the_pixel_limit_is_read_from_the_header_on_both_sides():
    bomb = images.bomb_png(7000)  # 49 million pixels
    with pytest.raises(downloader.CoverError) as e:
        cover_image.to_cover_image(bomb, CFG)
    assert e.value.reason == "decompression_bomb" and "7000x7000" in str(e.value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="over 40000000 pixels"):
        served(bomb)


def test_header_sizes_of_every_accepted_format():
    for fmt, data in ACCEPTED.items():
        size = preprocessing.image_size(tf.constant(data)).numpy().tolist()
        assert size == ([220, 146] if fmt == "JPEG" else [180, 120]), fmt
    assert preprocessing.image_size(tf.constant(b"junk")).numpy().tolist() == [-1, -1]
