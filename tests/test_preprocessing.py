"""preprocessing_fn through real tf.Transform (Beam), and the trainer's input pipeline on it."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from models import inputs, preprocessing
from pipeline import configs
from tests import images

CATEGORIES = ("Art", "History", "Poetry")
COLORS = ((220, 30, 30), (30, 200, 30), (30, 30, 220))
RAW_SPEC = {
    configs.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    configs.CATEGORY_KEY: tf.io.FixedLenFeature([1], tf.string),
}


def raw_rows():
    rows = []
    for i in range(12):
        k = i % 3
        data = images.jpeg(color=COLORS[k]) if i % 2 else images.png(color=(*COLORS[k], 255))
        rows.append({configs.IMAGE_KEY: [data], configs.CATEGORY_KEY: [CATEGORIES[k].encode()]})
    return rows


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    out = tmp_path_factory.mktemp("tft")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))

    def fn(features):
        return preprocessing.preprocessing_fn(features, {"num_classes": len(CATEGORIES)})

    with tft_beam.Context(temp_dir=str(out / "tmp")):
        (data, _), transform_fn = (raw_rows(), metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "graph"))
    # As TFX's Transform does: the raw schema beside the graph, for parsing raw data.
    metadata_io.write_metadata(
        metadata, str(out / "graph" / tft.TFTransformOutput.RAW_METADATA_DIR)
    )
    return data, tft.TFTransformOutput(str(out / "graph"))


def test_images_are_decoded_resized_and_standardised(transformed):
    data, _ = transformed
    batch = np.stack([row[configs.IMAGE_KEY] for row in data])
    assert batch.shape == (12, 150, 100, 3)
    # Standardised per channel over the analysed data: mean 0, deviation 1.
    np.testing.assert_allclose(batch.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(batch.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


def test_labels_are_one_hot_over_the_category_vocabulary(transformed):
    data, output = transformed
    vocabulary = [v.decode() for v in output.vocabulary_by_name(configs.CATEGORY_VOCABULARY)]
    assert sorted(vocabulary) == sorted(CATEGORIES)
    for i, row in enumerate(data):
        label = row[configs.LABEL_KEY]
        assert label.shape == (3,) and label.sum() == 1.0
        assert vocabulary[int(label.argmax())] == CATEGORIES[i % 3]


def test_input_fn_batches_raw_tfrecords_through_the_graph(transformed, tmp_path):
    _, output = transformed
    path = os.path.join(tmp_path, "data.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in raw_rows():
            feature = {
                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)) for k, v in row.items()
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    dataset = inputs.input_fn([path], output, batch_size=5, shuffle=False)
    batches = list(dataset)
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]  # one pass, last batch partial
    images_batch, labels = batches[0]
    assert images_batch.shape == (5, 150, 100, 3) and images_batch.dtype == tf.float32
    assert labels.shape == (5, 3)
    np.testing.assert_array_equal(tf.reduce_sum(labels, axis=1).numpy(), np.ones(5))
