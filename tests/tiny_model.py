"""A real Transform graph and a small exported cover model, built in seconds for tests."""

from __future__ import annotations

import os

import keras
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from bookcover import constants
from models import export, inputs, model, preprocessing, trainer
from tests import images

CATEGORIES = ("Art", "History", "Poetry")
COLORS = ((220, 30, 30), (30, 200, 30), (30, 30, 220))
# Each category's titles share a word (and its spellings' character grams) with no other.
TITLE_WORDS = (("painting", "sculpture"), ("empires", "wars"), ("sonnets", "verses"))
# As the reviewed schema (schema/schema.pbtxt) gives them to Transform.
RAW_SPEC = {
    constants.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    constants.CATEGORY_KEY: tf.io.FixedLenFeature([1], tf.string),
    constants.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string),
}


def title(i: int) -> str:
    """Row i's title: a word of its category's, and one every category's titles use."""
    return f"The {TITLE_WORDS[i % 3][(i // 3) % 2].title()} Book No. {i}"


def raw_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        k = i % 3
        data = images.jpeg(color=COLORS[k]) if i % 2 else images.png(color=(*COLORS[k], 255))
        rows.append(
            {
                constants.IMAGE_KEY: [data],
                constants.CATEGORY_KEY: [CATEGORIES[k].encode()],
                constants.TITLE_KEY: [title(i).encode()],
            }
        )
    return rows


def build_transform_graph(out_dir: str) -> tuple[list[dict], tft.TFTransformOutput]:
    """Runs preprocessing_fn with real tf.Transform on Beam; returns transformed rows and graph."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))

    def fn(features):
        return preprocessing.preprocessing_fn(features, {"num_classes": len(CATEGORIES)})

    graph_dir = os.path.join(out_dir, "graph")
    with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        (data, _), transform_fn = (raw_rows(), metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
    # As TFX's Transform does: the raw schema beside the graph, for parsing raw data.
    metadata_io.write_metadata(
        metadata, os.path.join(graph_dir, tft.TFTransformOutput.RAW_METADATA_DIR)
    )
    return data, tft.TFTransformOutput(graph_dir)


def write_tfrecords(path: str, rows: list[dict]) -> str:
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            feature = {
                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)) for k, v in row.items()
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return path


def train_and_export(
    out_dir: str, first_filters: int = 8, epochs: int = 2, options: dict | None = None
):
    """(keras model, transform output, export dir) of a briefly trained classifier;
    `options` as --model-option gives them (inputs=cover_title: the cover-and-title model)."""
    _, output = build_transform_graph(out_dir)
    records = write_tfrecords(os.path.join(out_dir, "train.gz"), raw_rows())
    keras.utils.set_random_seed(1)
    hp = model.default_hyperparameters((1e-3,), (first_filters,), options)
    with_titles = model.reads_titles(hp)
    cnn = model.build_model(
        hp, len(CATEGORIES), title_vocabulary_size=trainer.title_ids_of(output, hp)
    )
    data = inputs.input_fn([records], output, batch_size=4, shuffle=True, with_titles=with_titles)
    cnn.fit(data, epochs=epochs, verbose=0)
    export_dir = os.path.join(out_dir, "serving_model", "1")
    export.export_model(cnn, output, export_dir)
    return cnn, output, export_dir
