"""Transform's preprocessing_fn: cover decoding and normalisation, one-hot labels."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from bookcover import constants


def _uint(data: tf.Tensor, offset: int, size: int, big_endian: bool) -> tf.Tensor:
    """An unsigned integer of `size` bytes at `offset` of the encoded bytes, as int64."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    weights = tf.constant([256**i for i in range(size)], tf.int64)
    return tf.reduce_sum(raw * (tf.reverse(weights, [0]) if big_endian else weights))


def image_size(data: tf.Tensor) -> tf.Tensor:
    """(height, width) of JPEG, PNG, GIF or BMP bytes, read from the header alone;
    (-1, -1) for anything else. Nothing is decoded."""
    head = tf.strings.substr(data, 0, 8)
    short = tf.strings.length(data) < 30

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data, output_type=tf.int32)
        return tf.cast(shape[:2], tf.int64)

    def png():  # IHDR: width, height big-endian at 16 and 20
        return tf.stack([_uint(data, 20, 4, True), _uint(data, 16, 4, True)])

    def gif():  # logical screen: width, height little-endian at 6 and 8
        return tf.stack([_uint(data, 8, 2, False), _uint(data, 6, 2, False)])

    def bmp():  # BITMAPCOREHEADER (12 bytes): 16-bit sizes; later headers: 32-bit
        core = tf.equal(_uint(data, 14, 4, False), 12)
        width = tf.where(core, _uint(data, 18, 2, False), _uint(data, 18, 4, False))
        height = tf.where(core, _uint(data, 20, 2, False), _uint(data, 22, 4, False))
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down rows
        return tf.stack([height, width])

    def unknown():
        return tf.constant([-1, -1], tf.int64)

    return tf.case(
        [
            (short, unknown),
            (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg),
            (tf.equal(head, b"\x89PNG\r\n\x1a\n"), png),
            (tf.equal(tf.strings.substr(head, 0, 4), b"GIF8"), gif),
            (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
        ],
        default=unknown,
    )


def checked(data: tf.Tensor) -> tf.Tensor:
    """The bytes, once they are known to be an accepted format within the byte and
    pixel limits; otherwise InvalidArgument saying which limit, before any decoding."""
    size = image_size(data)
    checks = [
        tf.debugging.assert_less_equal(
            tf.cast(tf.strings.length(data), tf.int64),
            tf.constant(constants.MAX_IMAGE_BYTES, tf.int64),
            message=f"image over {constants.MAX_IMAGE_BYTES} bytes",
        ),
        tf.debugging.assert_greater(
            size[0],
            tf.constant(0, tf.int64),
            message=f"not an image in an accepted format ({', '.join(constants.IMAGE_FORMATS)})",
        ),
        tf.debugging.assert_less_equal(
            size[0] * size[1],
            tf.constant(constants.MAX_IMAGE_PIXELS, tf.int64),
            message=f"image over {constants.MAX_IMAGE_PIXELS} pixels (read from its header)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(data)


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8 [h, w, 1-4] -> float32 RGB [h, w, 3] in [0, 255]: transparency composited on
    white, grey spread to three channels, as ingestion does (bookcover/downloader.to_rgb)."""
    pixels = tf.cast(image, tf.float32)
    channels = tf.shape(image)[-1]
    colour = tf.cond(
        channels < 3,
        lambda: tf.tile(pixels[..., :1], [1, 1, 3]),
        lambda: pixels[..., :3],
    )
    with_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
    alpha = tf.cond(
        with_alpha, lambda: pixels[..., -1:] / 255.0, lambda: tf.ones_like(pixels[..., :1])
    )
    return colour * alpha + 255.0 * (1.0 - alpha)


def decode_covers(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes [batch] -> float32 RGB in [0, 1], [batch, 150, 100, 3].

    Lives in the Transform graph, so serving (any size, PNG, grayscale) and
    training decode and resize through the very same ops. Every image's format,
    bytes and pixels are checked before it is decoded (`checked`).
    """

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(checked(data), channels=0, expand_animations=False)
        image = tf.image.resize(to_rgb(image), [constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH])
        return image / 255.0

    return tf.map_fn(
        decode_one,
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec(
            [constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH, constants.IMAGE_CHANNELS], tf.float32
        ),
    )


def normalise(images: tf.Tensor) -> tf.Tensor:
    """Per-channel standardisation with the training data's mean and deviation."""
    channel_mean = tf.reduce_mean(images, axis=[1, 2])
    channel_sq_mean = tf.reduce_mean(tf.square(images), axis=[1, 2])
    mean = tft.mean(channel_mean, reduce_instance_dims=False)
    sq_mean = tft.mean(channel_sq_mean, reduce_instance_dims=False)
    std = tf.sqrt(tf.maximum(sq_mean - tf.square(mean), 1e-6))
    return (images - mean) / std


def one_hot_labels(categories: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Category strings -> one-hot over the category vocabulary (stored with the graph)."""
    # The depth is static so the label has a fixed shape in the schema; the
    # Trainer checks it against the vocabulary's size (models/trainer.py).
    index = tft.compute_and_apply_vocabulary(
        tf.reshape(categories, [-1]), vocab_filename=constants.CATEGORY_VOCABULARY
    )
    return tf.one_hot(index, num_classes, dtype=tf.float32)


# TFX Transform calls this.
def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    images = decode_covers(inputs[constants.IMAGE_KEY])
    outputs = {constants.IMAGE_KEY: normalise(images), constants.IMAGE_UNIT_KEY: images}
    if constants.CATEGORY_KEY in inputs:  # absent when serving
        outputs[constants.LABEL_KEY] = one_hot_labels(
            inputs[constants.CATEGORY_KEY], int(custom_config["num_classes"])
        )
    return outputs
