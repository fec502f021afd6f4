"""tf.data input pipeline: raw cover TFRecords read lazily, transformed on the fly."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from bookcover import constants
from models import hyperparameters

# tf.data's autotuning is off for every dataset handed to Keras, with the
# parallelism set here instead. An autotuned iterator runs a model thread that
# sleeps between optimisations, twice as long each time (up to a minute), and
# destroying the iterator waits for that sleep to end; Keras destroys and
# recreates its iterators at every epoch boundary (training, validation and
# MirroredStrategy's per-device iterators), which left epochs idle for up to
# 60 s (benchmarks/README.md, "Epoch boundaries").
PARALLEL_READS = 4
PREFETCH_BATCHES = 2


def parallel_calls() -> int:
    """Batches transformed at once: one per core the process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with tf.data's autotuning (and so its model thread) off."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def raw_feature_spec(tf_transform_output: tft.TFTransformOutput, keys: tuple[str, ...]) -> dict:
    """The parsing spec of the raw features the model needs, as the schema defines them."""
    spec = tf_transform_output.raw_feature_spec()
    return {key: spec[key] for key in keys}


def input_fn(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    seed: int = constants.SAMPLE_SEED,
    image_key: str = constants.IMAGE_KEY,
    replicas: int = 1,
    replica: int = 0,
    deterministic: bool = False,
    with_titles: bool = False,
    classes: list[str] | None = None,
    shuffle_buffer: int = hyperparameters.SHUFFLE_BUFFER,
) -> tf.data.Dataset:
    """(normalised image batch, one-hot label batch), one pass over the files; `with_titles`:
    ({image_key: images, TITLE_TOKENS_KEY: title token ids}, labels). `classes`: labels
    one-hot over these categories (pretraining's, beyond Transform's vocabulary); a
    category not among them is an error. `shuffle_buffer`: serialized examples shuffled
    at once (shuffle_buffer_for: all of them, when the count is known).

    The Transform graph runs here rather than being materialised: a transformed
    cover is 180 KB of float32 against about 5 KB of JPEG, so decoding on the fly
    keeps disk and page cache small at the price of some CPU per epoch.

    With several `replicas`, this is replica `replica`'s share: every replica
    reads the same global batches of `batch_size * replicas` serialized
    examples in the same order (seeded, deterministic) and decodes only every
    replicas-th of them, so all replicas see the same number of batches. A last
    global batch too small to give each replica an example is dropped.
    """
    files = tf.data.Dataset.list_files(file_patterns, shuffle=shuffle, seed=seed)
    dataset = files.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=PARALLEL_READS,
        num_parallel_calls=PARALLEL_READS,
        # Replicas must agree on the order; alone, order only matters for eval, and for
        # `deterministic` readers (a grid trial's result depends on its values alone).
        deterministic=deterministic or not shuffle or replicas > 1,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    tft_layer = tf_transform_output.transform_features_layer()
    keys = (constants.IMAGE_KEY, constants.CATEGORY_KEY)
    spec = raw_feature_spec(tf_transform_output, keys + ((constants.TITLE_KEY,) * with_titles))

    label_of = None if classes is None else category_labels(classes)

    def to_model_inputs(serialized: tf.Tensor):
        raw = tf.io.parse_example(serialized, spec)
        transformed = tft_layer(raw)
        if label_of is None:
            labels = transformed[constants.LABEL_KEY]
        else:
            labels = label_of(raw[constants.CATEGORY_KEY])
        if with_titles:
            titles = transformed[constants.TITLE_TOKENS_KEY]
            return {image_key: transformed[image_key], constants.TITLE_TOKENS_KEY: titles}, labels
        return transformed[image_key], labels

    dataset = dataset.batch(batch_size * replicas)
    if replicas > 1:
        dataset = dataset.filter(lambda s: tf.shape(s)[0] >= replicas).map(
            lambda s: s[replica::replicas]
        )
    dataset = dataset.map(to_model_inputs, num_parallel_calls=parallel_calls())
    return without_autotune(dataset.prefetch(PREFETCH_BATCHES))


def shuffle_buffer_for(examples: int | None) -> int:
    """A buffer that holds every one of `examples` training examples (MAX_SHUFFLE_BUFFER
    at most; SHUFFLE_BUFFER when the count is not known)."""
    if not examples:
        return hyperparameters.SHUFFLE_BUFFER
    return max(1, min(examples, hyperparameters.MAX_SHUFFLE_BUFFER))


def category_labels(classes: list[str]) -> Callable[[tf.Tensor], tf.Tensor]:
    """Category strings -> one-hot rows over `classes`; a category not among them stops
    the input pipeline with an error naming it."""
    names = tf.constant(classes)

    def one_hot(categories: tf.Tensor) -> tf.Tensor:
        matches = tf.cast(tf.equal(tf.reshape(categories, [-1, 1]), names[tf.newaxis]), tf.float32)
        found = tf.reduce_all(tf.reduce_sum(matches, axis=1) > 0)
        check = tf.debugging.Assert(found, ["a category outside the classes:", categories])
        with tf.control_dependencies([check]):
            return tf.identity(matches)

    return one_hot


def _weight_vector(class_weight: dict[int, float]) -> tf.Tensor:
    """Class weights as a vector in class order, so labels @ vector weighs each example."""
    return tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)


def weigh_classes(dataset: tf.data.Dataset, class_weight: dict[int, float]) -> tf.data.Dataset:
    """(images, labels, sample weights): each example weighs as its class does.

    What Keras' `class_weight` does, but inside the data, so it also works on a
    distributed dataset (which Keras cannot map).
    """
    weights = _weight_vector(class_weight)
    return dataset.map(
        lambda images, labels: (images, labels, tf.linalg.matvec(labels, weights)),
        num_parallel_calls=parallel_calls(),
    )


def distribute(
    strategy: tf.distribute.Strategy, make_dataset: Callable[[int, int], tf.data.Dataset]
):
    """`make_dataset(replicas, replica)` as `strategy`'s input.

    One replica: the dataset itself. Several: each replica iterates its own
    share of the data directly (PER_REPLICA, no fetch to device), so no
    MultiDeviceIterator is made: its per-device datasets are autotuned whatever
    the source's options say, and would bring the idle epoch boundaries back.
    """
    if strategy.num_replicas_in_sync == 1:
        return make_dataset(1, 0)
    options = tf.distribute.InputOptions(
        experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA,
        experimental_fetch_to_device=False,
    )
    return strategy.distribute_datasets_from_function(
        lambda context: make_dataset(context.num_input_pipelines, context.input_pipeline_id),
        options,
    )


def mix_batches(
    dataset: tf.data.Dataset,
    alpha: float,
    class_weight: dict[int, float] | None = None,
    seed: int = constants.SAMPLE_SEED,
) -> tf.data.Dataset:
    """Mixup (Zhang et al., 2018): every batch blended with a shuffled copy of itself.

    Images and one-hot labels are mixed with the same share, drawn from
    Beta(alpha, alpha) once per batch; fresh draws every epoch, reproducible from
    `seed`. Class weights travel as sample weights, blended the same way: given
    to fit, Keras would weigh a mixed label by its larger class alone. Title tokens
    (features given as a dict) cannot be blended: each mixed example keeps the title
    of the example with the larger share.
    """
    weights = None if class_weight is None else _weight_vector(class_weight)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(3)

    def mix(batch, batch_seeds):
        features, labels = batch
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(labels)[0]), seed=batch_seeds[:2]
        )
        draws = tf.random.stateless_gamma([2], seed=batch_seeds[1:], alpha=alpha)
        share = draws[0] / (draws[0] + draws[1])

        def blend(values):
            return share * values + (1.0 - share) * tf.gather(values, order)

        def mixed(values):
            if values.dtype.is_floating:
                return blend(values)
            return tf.cond(share >= 0.5, lambda: values, lambda: tf.gather(values, order))

        if isinstance(features, dict):
            features = {name: mixed(values) for name, values in features.items()}
        else:
            features = blend(features)
        if weights is None:
            return features, blend(labels)
        return features, blend(labels), blend(tf.linalg.matvec(labels, weights))

    mixed = tf.data.Dataset.zip((dataset, seeds)).map(mix, num_parallel_calls=parallel_calls())
    return without_autotune(mixed)


def title_ids(tf_transform_output: tft.TFTransformOutput) -> int:
    """How many title token ids the model embeds: the title vocabulary and 0 (padding)."""
    return tf_transform_output.vocabulary_size_by_name(constants.TITLE_VOCABULARY) + 1


def category_names(tf_transform_output: tft.TFTransformOutput) -> list[str]:
    """The categories in label order (Transform's vocabulary), as text."""
    names = tf_transform_output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def category_counts(
    file_patterns: list[str], tf_transform_output: tft.TFTransformOutput
) -> collections.Counter:
    """Examples per category name in the files.

    Parses only the category feature, so it reads the files without decoding a
    single image; the training set's size and balance come from it.
    """
    spec = raw_feature_spec(tf_transform_output, (constants.CATEGORY_KEY,))
    files = tf.data.Dataset.list_files(file_patterns, shuffle=False)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    counts: collections.Counter = collections.Counter()
    for batch in dataset.map(lambda s: tf.io.parse_example(s, spec)[constants.CATEGORY_KEY]):
        counts.update(category.decode() for category in batch.numpy().reshape(-1))
    return counts


def class_counts(file_patterns: list[str], tf_transform_output: tft.TFTransformOutput) -> list[int]:
    """Examples per class in the files, in the category vocabulary's order."""
    vocabulary = category_names(tf_transform_output)
    found = category_counts(file_patterns, tf_transform_output)
    outside = sorted(set(found) - set(vocabulary))
    if outside:
        raise ValueError(f"category {outside[0]!r} in {file_patterns} is not in the vocabulary")
    return [found[name] for name in vocabulary]


def inverse_frequency_weights(counts: list[int]) -> dict[int, float]:
    """Class weights that make every class weigh as much as a balanced set would."""
    total, present = sum(counts), sum(1 for c in counts if c)
    return {i: (total / (present * c) if c else 0.0) for i, c in enumerate(counts)}
