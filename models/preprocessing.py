"""Transform's preprocessing_fn: cover decoding and normalisation, one-hot labels."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from pipeline import configs


def decode_covers(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes [batch] -> float32 RGB in [0, 1], [batch, 150, 100, 3].

    Lives in the Transform graph, so serving (any size, PNG, grayscale) and
    training decode and resize through the very same ops.
    """

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=configs.IMAGE_CHANNELS, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, [configs.IMAGE_HEIGHT, configs.IMAGE_WIDTH])

    return tf.map_fn(
        decode_one,
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec(
            [configs.IMAGE_HEIGHT, configs.IMAGE_WIDTH, configs.IMAGE_CHANNELS], tf.float32
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
        tf.reshape(categories, [-1]), vocab_filename=configs.CATEGORY_VOCABULARY
    )
    return tf.one_hot(index, num_classes, dtype=tf.float32)


# TFX Transform calls this.
def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    images = decode_covers(inputs[configs.IMAGE_KEY])
    outputs = {configs.IMAGE_KEY: normalise(images), configs.IMAGE_UNIT_KEY: images}
    if configs.CATEGORY_KEY in inputs:  # absent when serving
        outputs[configs.LABEL_KEY] = one_hot_labels(
            inputs[configs.CATEGORY_KEY], int(custom_config["num_classes"])
        )
    return outputs
