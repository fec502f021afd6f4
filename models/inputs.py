"""tf.data input pipeline: raw cover TFRecords read lazily, transformed on the fly."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from pipeline import configs


def raw_feature_spec(tf_transform_output: tft.TFTransformOutput, keys: tuple[str, ...]) -> dict:
    """The parsing spec of the raw features the model needs, as the schema defines them."""
    spec = tf_transform_output.raw_feature_spec()
    return {key: spec[key] for key in keys}


def input_fn(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    seed: int = configs.SAMPLE_SEED,
) -> tf.data.Dataset:
    """(normalised image batch, one-hot label batch), one pass over the files.

    The Transform graph runs here rather than being materialised: a transformed
    cover is 180 KB of float32 against about 5 KB of JPEG, so decoding on the fly
    keeps disk and page cache small at the price of some CPU per epoch.
    """
    files = tf.data.Dataset.list_files(file_patterns, shuffle=shuffle, seed=seed)
    dataset = files.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=4,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle,
    )
    if shuffle:
        dataset = dataset.shuffle(configs.SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    tft_layer = tf_transform_output.transform_features_layer()
    spec = raw_feature_spec(tf_transform_output, (configs.IMAGE_KEY, configs.CATEGORY_KEY))

    def to_model_inputs(serialized: tf.Tensor):
        transformed = tft_layer(tf.io.parse_example(serialized, spec))
        return transformed[configs.IMAGE_KEY], transformed[configs.LABEL_KEY]

    dataset = dataset.batch(batch_size).map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
