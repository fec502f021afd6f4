"""Writes the reviewed schema (schema/schema.pbtxt) from a run's statistics, for a person to diff.

    python -m pipeline.schema --output-dir outputs        # the latest local run's statistics
    python -m pipeline.schema --statistics URI/Split-train/FeatureStats.pb

TFDV infers the features and their presence; this project's rules are then
applied the same way every time, so a regenerated schema differs from the
committed one only where the data does: the image is a JPEG-sized cover
(TFDV's image domain), the category vocabulary is not frozen (each run picks
its top K) but its shares are compared across splits (skew) and with the
pushed model's data (drift) by L-infinity distance.
"""

from __future__ import annotations

import argparse
import glob
import os

from bookcover import constants, split_statistics
from pipeline import configs

REQUIRED = (
    constants.IMAGE_KEY,
    constants.CATEGORY_KEY,
    constants.TITLE_KEY,
    constants.SOURCE_URL_KEY,
    constants.CONTENT_HASH_KEY,
)


def reviewed_schema(statistics):
    """The inferred schema with the project's rules applied."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(statistics, infer_feature_shape=True)
    # The vocabulary is chosen per run: keep the comparators, not the values.
    category = tfdv.get_feature(schema, constants.CATEGORY_KEY)
    category.ClearField("domain")
    del schema.string_domain[:]
    category.skew_comparator.infinity_norm.threshold = configs.CATEGORY_SHARE_LINF
    category.drift_comparator.infinity_norm.threshold = configs.CATEGORY_SHARE_LINF
    # The image domain bounds the size; schema/validations.pbtxt checks the format (its
    # SQL also fails on values that are not images). No minimum_supported_image_fraction:
    # TFDV warns on every split too small for image statistics when it is set.
    image = tfdv.get_feature(schema, constants.IMAGE_KEY)
    image.image_domain.max_image_byte_size = configs.MAX_COVER_BYTES
    # TFDV's semantic domain statistics find the titles to be natural language; a schema
    # that did not say so would report it as an anomaly on every run large enough.
    tfdv.get_feature(schema, constants.TITLE_KEY).natural_language_domain.SetInParent()
    for name in REQUIRED:
        presence = tfdv.get_feature(schema, name).presence
        presence.min_fraction, presence.min_count = 1.0, 1
    return schema


def write(statistics_path: str, schema_file: str = configs.SCHEMA_FILE) -> str:
    import tensorflow_data_validation as tfdv

    schema = reviewed_schema(tfdv.load_stats_binary(statistics_path))
    os.makedirs(os.path.dirname(schema_file), exist_ok=True)
    tfdv.write_schema_text(schema, schema_file)
    return schema_file


def latest_train_statistics(output_dir: str) -> str:
    pattern = os.path.join(output_dir, "pipeline", "StatisticsGen", "statistics", "*")
    runs = sorted(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))
    if not runs:
        raise SystemExit(f"{output_dir}: no StatisticsGen output; run the pipeline first")
    return split_statistics.split_file(runs[-1], "train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--output-dir", default=configs.OUTPUT_DIR, help="a local run's output")
    source.add_argument("--statistics", help="a FeatureStats.pb (train split)")
    parser.add_argument("--schema-file", default=configs.SCHEMA_FILE)
    args = parser.parse_args(argv)
    statistics = args.statistics or latest_train_statistics(args.output_dir)
    print(write(statistics, args.schema_file))
    print("review the change (git diff schema/) before committing it")


if __name__ == "__main__":
    main()
