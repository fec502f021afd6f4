"""preprocessing_fn through real tf.Transform (Beam), and the trainer's input pipeline on it."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from bookcover import constants
from models import inputs, preprocessing
from tests import tiny_model


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    return tiny_model.build_transform_graph(str(tmp_path_factory.mktemp("tft")))


@pytest.mark.pipeline  # TFT's Beam analysis builds the graph
def test_images_are_decoded_resized_and_standardised(transformed):
    data, _ = transformed
    batch = np.stack([row[constants.IMAGE_KEY] for row in data])
    assert batch.shape == (12, 150, 100, 3)
    # Standardised per channel over the analysed data: mean 0, deviation 1.
    np.testing.assert_allclose(batch.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(batch.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


@pytest.mark.pipeline  # TFT's Beam analysis builds the graph
def test_labels_are_one_hot_over_the_category_vocabulary(transformed):
    data, output = transformed
    vocabulary = [v.decode() for v in output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)]
    assert sorted(vocabulary) == sorted(tiny_model.CATEGORIES)
    for i, row in enumerate(data):
        label = row[constants.LABEL_KEY]
        assert label.shape == (3,) and label.sum() == 1.0
        assert vocabulary[int(label.argmax())] == tiny_model.CATEGORIES[i % 3]


@pytest.mark.pipeline  # TFT's Beam analysis builds the graph
def test_input_fn_batches_raw_tfrecords_through_the_graph(transformed, tmp_path):
    _, output = transformed
    path = tiny_model.write_tfrecords(os.path.join(tmp_path, "data.gz"), tiny_model.raw_rows())
    dataset = inputs.input_fn([path], output, batch_size=5, shuffle=False)
    batches = list(dataset)
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]  # one pass, last batch partial
    images_batch, labels = batches[0]
    assert images_batch.shape == (5, 150, 100, 3) and images_batch.dtype == tf.float32
    assert labels.shape == (5, 3)
    np.testing.assert_array_equal(tf.reduce_sum(labels, axis=1).numpy(), np.ones(5))


@pytest.mark.pipeline  # TFT's Beam analysis builds the graph
def test_class_counts_follow_the_vocabulary_without_decoding_images(transformed, tmp_path):
    _, output = transformed
    rows = tiny_model.raw_rows(12) + tiny_model.raw_rows(1)  # one extra of CATEGORIES[0]
    path = tiny_model.write_tfrecords(os.path.join(tmp_path, "data.gz"), rows)
    vocabulary = [v.decode() for v in output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)]
    counts = inputs.class_counts([path], output)
    assert counts == [5 if name == tiny_model.CATEGORIES[0] else 4 for name in vocabulary]


def test_inverse_frequency_weights_balance_the_classes():
    weights = inputs.inverse_frequency_weights([30, 10, 20, 0])
    assert weights == {0: 60 / 90, 1: 60 / 30, 2: 60 / 60, 3: 0.0}
    # Each present class then carries the same total weight.
    assert {round(weights[i] * n, 9) for i, n in enumerate([30, 10, 20])} == {20.0}


def _label_coloured_batches(batch_size=8, batches=4):
    """Covers whose every pixel is their one-hot label: a mixed cover must equal its label."""
    classes = np.arange(batch_size * batches) % 3
    labels = np.eye(3, dtype=np.float32)[classes]
    images = np.broadcast_to(labels[:, None, None, :], (len(labels), 4, 2, 3)).copy()
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def test_mixup_blends_covers_labels_and_class_weights_alike():
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    mixed = inputs.mix_batches(_label_coloured_batches(), 0.4, class_weight, seed=7)
    assert len(mixed.element_spec) == 3  # weights travel as sample weights
    shares = []
    for images, labels, weights in mixed:
        np.testing.assert_allclose(
            images.numpy(),
            np.broadcast_to(labels.numpy()[:, None, None, :], images.shape),
            atol=1e-6,
        )
        np.testing.assert_allclose(tf.reduce_sum(labels, axis=1).numpy(), 1.0, atol=1e-6)
        np.testing.assert_allclose(
            weights.numpy(), labels.numpy() @ np.array([0.5, 2.0, 1.0]), atol=1e-6
        )
        shares.extend(labels.numpy().max(axis=1))
    assert min(shares) < 0.95  # some covers really are blends


def test_mixup_draws_afresh_every_epoch_and_reproducibly_from_its_seed():
    def epochs(seed, count=2):
        mixed = inputs.mix_batches(_label_coloured_batches(), 0.4, seed=seed)
        return [np.concatenate([labels.numpy() for _, labels in mixed]) for _ in range(count)]

    first, second = epochs(seed=7)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, epochs(seed=7, count=1)[0])
    assert not np.allclose(first, epochs(seed=8, count=1)[0])


def _standardised(rows: list[dict], desired_batch_size: int, temp_dir: str) -> np.ndarray:
    """`normalise` over `rows` by real tf.Transform, Beam batching them `desired_batch_size`
    at a time; the transformed pixels, ordered by their first value (as the rows' are:
    standardising keeps the order)."""
    spec = {"pixels": tf.io.FixedLenFeature([2, 2, 3], tf.float32)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))

    def fn(features):
        return {"pixels": preprocessing.normalise(features["pixels"])}

    with tft_beam.Context(temp_dir=temp_dir, desired_batch_size=desired_batch_size):
        (data, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
    pixels = np.stack([row["pixels"] for row in data])
    return pixels[np.argsort(pixels[:, 0, 0, 0])]


@pytest.mark.pipeline  # TFT's Beam analysis
def test_standardisation_constants_do_not_depend_on_how_beam_batches(tmp_path):
    # Beam sizes its batches by timing, so two runs over the same examples batch them
    # differently; the statistics must still come out bit for bit the same, or the
    # same covers train a network another way at every run.
    rng = np.random.default_rng(0)
    rows = [{"pixels": rng.random((2, 2, 3), dtype=np.float32)} for _ in range(600)]
    few = _standardised(rows, 7, str(tmp_path / "few"))
    many = _standardised(rows, 256, str(tmp_path / "many"))
    assert np.array_equal(few, many)
