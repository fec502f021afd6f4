"""Each split's file in a StatisticsGen or ExampleValidator artifact, found in one place."""

from __future__ import annotations

import os

from tfx.dsl.io import fileio

STATISTICS_FILE = "FeatureStats.pb"  # StatisticsGen's, per split
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's, per split
SPLIT_PREFIX = "Split-"


def split_file(uri: str, split: str, name: str = STATISTICS_FILE) -> str:
    return os.path.join(uri, f"{SPLIT_PREFIX}{split}", name)


def split_files(uri: str, name: str = STATISTICS_FILE) -> dict[str, str]:
    """Split name -> its file under the artifact `uri`, in split order."""
    found = {}
    for path in sorted(fileio.glob(os.path.join(uri, f"{SPLIT_PREFIX}*", name))):
        found[os.path.basename(os.path.dirname(path))[len(SPLIT_PREFIX) :]] = path
    return found


def load_split_statistics(uri: str) -> dict:
    """Split name -> DatasetFeatureStatisticsList, from a StatisticsGen artifact."""
    import tensorflow_data_validation as tfdv

    return {split: tfdv.load_stats_binary(path) for split, path in split_files(uri).items()}
