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
    image_key: str = configs.IMAGE_KEY,
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
        return transformed[image_key], transformed[configs.LABEL_KEY]

    dataset = dataset.batch(batch_size).map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def mix_batches(
    dataset: tf.data.Dataset,
    alpha: float,
    class_weight: dict[int, float] | None = None,
    seed: int = configs.SAMPLE_SEED,
) -> tf.data.Dataset:
    """Mixup (Zhang et al., 2018): every batch blended with a shuffled copy of itself.

    Images and one-hot labels are mixed with the same share, drawn from
    Beta(alpha, alpha) once per batch; fresh draws every epoch, reproducible from
    `seed`. Class weights travel as sample weights, blended the same way: given
    to fit, Keras would weigh a mixed label by its larger class alone.
    """
    weights = None
    if class_weight is not None:
        weights = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(3)

    def mix(batch, batch_seeds):
        images, labels = batch
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(images)[0]), seed=batch_seeds[:2]
        )
        draws = tf.random.stateless_gamma([2], seed=batch_seeds[1:], alpha=alpha)
        share = draws[0] / (draws[0] + draws[1])

        def blend(values):
            return share * values + (1.0 - share) * tf.gather(values, order)

        if weights is None:
            return blend(images), blend(labels)
        return blend(images), blend(labels), blend(tf.linalg.matvec(labels, weights))

    return tf.data.Dataset.zip((dataset, seeds)).map(mix, num_parallel_calls=tf.data.AUTOTUNE)


def class_counts(file_patterns: list[str], tf_transform_output: tft.TFTransformOutput) -> list[int]:
    """Examples per class in the files, in the category vocabulary's order.

    Parses only the category feature, so it reads the files without decoding a
    single image; the training set's size and balance come from it.
    """
    vocabulary = [
        v.decode() if isinstance(v, bytes) else v
        for v in tf_transform_output.vocabulary_by_name(configs.CATEGORY_VOCABULARY)
    ]
    index = {name: i for i, name in enumerate(vocabulary)}
    spec = raw_feature_spec(tf_transform_output, (configs.CATEGORY_KEY,))
    files = tf.data.Dataset.list_files(file_patterns, shuffle=False)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    counts = [0] * len(vocabulary)
    for batch in dataset.map(lambda s: tf.io.parse_example(s, spec)[configs.CATEGORY_KEY]):
        for category in batch.numpy().reshape(-1):
            name = category.decode()
            if name not in index:
                raise ValueError(f"category {name!r} in {file_patterns} is not in the vocabulary")
            counts[index[name]] += 1
    return counts


def inverse_frequency_weights(counts: list[int]) -> dict[int, float]:
    """Class weights that make every class weigh as much as a balanced set would."""
    total, present = sum(counts), sum(1 for c in counts if c)
    return {i: (total / (present * c) if c else 0.0) for i, c in enumerate(counts)}
