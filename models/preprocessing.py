"""Transform's preprocessing_fn: cover decoding and normalisation, title tokens, one-hot labels."""

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


def gif_frames(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(pixels of all frames together, whether every frame lies inside the canvas,
    whether the blocks end within MAX_GIF_BLOCKS) of GIF bytes.

    TensorFlow's GIF decoder reads every frame, whatever `expand_animations` asks for,
    each as large as its own descriptor says, and sizes its output by the largest
    frame rather than by the canvas the header declares: a 27 KB file with a 10x10
    canvas and a 6000x6000 frame decodes to 36 million pixels. So the blocks are
    walked (extensions and image data are chains of sub-blocks of at most 255 bytes)
    and every frame descriptor is read, before anything is decoded."""
    zero, two = tf.constant(0, tf.int64), tf.constant(2, tf.int64)
    length = tf.cast(tf.strings.length(data), tf.int64)
    # Padded, so that the 10 bytes read at any position before the end exist.
    raw = tf.io.decode_raw(data + b"\0" * 16, tf.uint8)

    def read(position: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.slice(raw, [position], [10]), tf.int64)

    def colour_table(packed: tf.Tensor) -> tf.Tensor:  # its size in bytes, if present
        entries = tf.bitwise.left_shift(two, tf.bitwise.bitwise_and(packed, 7))
        return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0, 3 * entries, zero)

    header = read(tf.constant(6, tf.int64))
    width, height = header[0] + 256 * header[1], header[2] + 256 * header[3]

    # One block per step, without branches (a while loop's conds cost more than the
    # arithmetic): a sub-block is a size byte and that many bytes, and size 0 ends
    # its chain; 0x2C is a frame (left, top, width, height, flags, [colour table],
    # LZW code size, then sub-blocks); 0x21 an extension (label, then sub-blocks);
    # anything else (the trailer 0x3B) ends the file, as it ends the decoder.
    def step(position, in_chain, pixels, inside, done, blocks):
        block = read(position)
        size = block[0]
        is_frame = tf.logical_and(tf.logical_not(in_chain), tf.equal(size, 0x2C))
        is_extension = tf.logical_and(tf.logical_not(in_chain), tf.equal(size, 0x21))
        left, top = block[1] + 256 * block[2], block[3] + 256 * block[4]
        w, h = block[5] + 256 * block[6], block[7] + 256 * block[8]
        within = tf.logical_and(left + w <= width, top + h <= height)
        jump = tf.where(
            in_chain,
            1 + size,
            tf.where(is_frame, 11 + colour_table(block[9]), tf.where(is_extension, two, zero)),
        )
        return (
            position + jump,
            tf.where(in_chain, size > 0, tf.logical_or(is_frame, is_extension)),
            pixels + tf.where(is_frame, w * h, zero),
            tf.logical_and(inside, tf.logical_or(tf.logical_not(is_frame), within)),
            tf.equal(jump, 0),
            blocks + 1,
        )

    def more(position, in_chain, pixels, inside, done, blocks):
        going = tf.logical_and(tf.logical_not(done), position < length)
        return tf.logical_and(going, blocks < constants.MAX_GIF_BLOCKS)

    start = 13 + colour_table(header[4])
    _, _, pixels, inside, done, blocks = tf.while_loop(
        more,
        step,
        [start, tf.constant(False), zero, tf.constant(True), tf.constant(False), zero],
        parallel_iterations=1,
    )
    return pixels, inside, tf.logical_or(done, blocks < constants.MAX_GIF_BLOCKS)


def checked(data: tf.Tensor) -> tf.Tensor:
    """The bytes, once they are known to be an accepted format within the byte and
    pixel limits (a GIF's pixels: all its frames, each inside its canvas); otherwise
    InvalidArgument saying which limit, before any decoding."""
    size = image_size(data)
    is_gif = tf.logical_and(size[0] > 0, tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"))
    gif_pixels, inside, finished = tf.cond(
        is_gif,
        lambda: gif_frames(data),
        lambda: (tf.constant(0, tf.int64), tf.constant(True), tf.constant(True)),
    )
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
        tf.debugging.Assert(inside, ["GIF with a frame outside its canvas"]),
        tf.debugging.Assert(finished, [f"GIF of over {constants.MAX_GIF_BLOCKS} blocks"]),
        tf.debugging.assert_less_equal(
            tf.maximum(size[0] * size[1], gif_pixels),
            tf.constant(constants.MAX_IMAGE_PIXELS, tf.int64),
            message=f"image over {constants.MAX_IMAGE_PIXELS} pixels (read from its header)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(data)


def checked_request(encoded: tf.Tensor) -> tf.Tensor:
    """A request's images [n], once there are at most MAX_REQUEST_IMAGES of them holding
    at most MAX_REQUEST_PIXELS pixels by their headers; otherwise InvalidArgument saying
    which limit. Each image is still checked on its own as it is decoded (`checked`)."""
    encoded = tf.reshape(encoded, [-1])
    # An image over the limit of one image is refused by its own check, with its own
    # message: here it counts as the most that one image may hold.
    pixels = tf.map_fn(
        lambda data: tf.minimum(
            tf.reduce_prod(tf.maximum(image_size(data), 0)), constants.MAX_IMAGE_PIXELS + 1
        ),
        encoded,
        fn_output_signature=tf.int64,
    )
    checks = [
        tf.debugging.assert_less_equal(
            tf.size(encoded),
            constants.MAX_REQUEST_IMAGES,
            message=f"request of more than {constants.MAX_REQUEST_IMAGES} images",
        ),
        tf.debugging.assert_less_equal(
            tf.reduce_sum(pixels),
            tf.constant(constants.MAX_REQUEST_PIXELS, tf.int64),
            message=f"request of more than {constants.MAX_REQUEST_PIXELS} pixels "
            "(read from their headers)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(encoded)


def resized_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8 [h, w, 1-4] -> float32 RGB [150, 100, 3] in [0, 255]: transparency
    composited on white, grey spread to three channels, as ingestion does
    (bookcover/cover_image.to_rgb).

    Resized before anything else is done to the pixels, so that a large image costs
    its decoded uint8 bytes and little more (no float copy at full size). Compositing
    commutes with the resize: bilinear weights sum to one, so resizing the colour
    premultiplied by alpha (in uint16, exact) and alpha itself, then compositing,
    is compositing and then resizing."""
    size = [constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH]
    channels = tf.shape(image)[-1]
    colour = image[..., : tf.where(channels < 3, 1, 3)]
    with_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))

    def composited():
        alpha = tf.cast(image[..., -1:], tf.uint16)
        premultiplied = tf.image.resize(tf.cast(colour, tf.uint16) * alpha, size)
        return premultiplied / 255.0 + 255.0 - tf.image.resize(alpha, size)

    rgb = tf.cond(with_alpha, composited, lambda: tf.image.resize(colour, size))
    return tf.cond(tf.equal(tf.shape(rgb)[-1], 1), lambda: tf.tile(rgb, [1, 1, 3]), lambda: rgb)


def decode_covers(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes [batch] -> float32 RGB in [0, 1], [batch, 150, 100, 3].

    Lives in the Transform graph, so serving (any size, PNG, grayscale) and
    training decode and resize through the very same ops. Every image's format,
    bytes and pixels are checked before it is decoded (`checked`), and images are
    decoded one at a time, so a batch holds at most one decoded image at full size.
    """

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(checked(data), channels=0, expand_animations=False)
        return resized_rgb(image) / 255.0

    return tf.map_fn(
        decode_one,
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec(
            [constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH, constants.IMAGE_CHANNELS], tf.float32
        ),
        parallel_iterations=1,
    )


def normalise(images: tf.Tensor) -> tf.Tensor:
    """Per-channel standardisation with the training data's mean and deviation."""
    channel_mean = tf.reduce_mean(images, axis=[1, 2])
    channel_sq_mean = tf.reduce_mean(tf.square(images), axis=[1, 2])
    # Summed in float64 and only then rounded: the analyzers combine one partial sum per
    # Beam batch, and Beam sizes its batches by timing, so in float32 the constants came
    # out a few ulps apart from run to run, and the same covers trained another network.
    mean = tft.mean(channel_mean, reduce_instance_dims=False, output_dtype=tf.float64)
    sq_mean = tft.mean(channel_sq_mean, reduce_instance_dims=False, output_dtype=tf.float64)
    std = tf.sqrt(tf.maximum(sq_mean - tf.square(mean), 1e-6))
    return (images - tf.cast(mean, tf.float32)) / tf.cast(std, tf.float32)


def one_hot_labels(categories: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Category strings -> one-hot over the category vocabulary (stored with the graph)."""
    # The depth is static so the label has a fixed shape in the schema; the
    # Trainer checks it against the vocabulary's size (models/trainer.py).
    index = tft.compute_and_apply_vocabulary(
        tf.reshape(categories, [-1]), vocab_filename=constants.CATEGORY_VOCABULARY
    )
    return tf.one_hot(index, num_classes, dtype=tf.float32)


def title_tokens(titles: tf.Tensor) -> tf.RaggedTensor:
    """Title strings [batch] -> ragged tokens: the lower-cased words, and each word's
    character 3- and 4-grams with its boundaries marked by spaces (" the", "the ").

    The character grams carry what a word's spelling says when the word itself is rare
    (plurals, compounds, names): on the development covers' titles a TF-IDF model on
    words alone scored 49%, on words and these grams 52% (benchmarks/README.md)."""
    # At most 4 bytes a character: the first MAX_TITLE_CHARS characters lie within this
    # many bytes, so the work on a served title is bounded whatever its length.
    text = tf.strings.substr(tf.reshape(titles, [-1]), 0, 4 * constants.MAX_TITLE_CHARS)
    # Bytes that are not UTF-8 (a served request's) become U+FFFD, not an error.
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.substr(text, 0, constants.MAX_TITLE_CHARS, unit="UTF8_CHAR")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}]+", " ")
    words = tf.strings.split(tf.strings.strip(text))
    chars = tf.strings.unicode_split(tf.strings.join([" ", words.flat_values, " "]), "UTF-8")
    # [words of all titles, grams] -> [titles, words, grams] -> [titles, grams]
    grams = tf.concat([tf.strings.ngrams(chars, width, separator="") for width in (3, 4)], 1)
    return tf.concat([words, words.with_flat_values(grams).merge_dims(1, 2)], axis=1)


def title_token_ids(titles: tf.Tensor) -> tf.Tensor:
    """Title strings [batch] -> int64 [batch, MAX_TITLE_TOKENS]: ids into the train split's
    title vocabulary counted from 1; 0 pads, and stands for a token not in the vocabulary
    (an empty title is all zeros)."""
    ids = tft.compute_and_apply_vocabulary(
        title_tokens(titles),
        top_k=constants.TITLE_VOCABULARY_SIZE,
        frequency_threshold=constants.TITLE_MIN_COUNT,
        default_value=-1,
        vocab_filename=constants.TITLE_VOCABULARY,
    )
    return (ids + 1).to_tensor(default_value=0, shape=[None, constants.MAX_TITLE_TOKENS])


# TFX Transform calls this.
def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    images = decode_covers(inputs[constants.IMAGE_KEY])
    outputs = {constants.IMAGE_KEY: normalise(images), constants.IMAGE_UNIT_KEY: images}
    if constants.TITLE_KEY in inputs:  # in every example CoverExampleGen writes
        outputs[constants.TITLE_TOKENS_KEY] = title_token_ids(inputs[constants.TITLE_KEY])
    if constants.CATEGORY_KEY in inputs:  # absent when serving
        outputs[constants.LABEL_KEY] = one_hot_labels(
            inputs[constants.CATEGORY_KEY], int(custom_config["num_classes"])
        )
    return outputs
