"""The Trainer's model depends on its data and settings alone: two runs on the same
examples train the same model."""

import json
import subprocess

import pytest

from tests import run_fn_job, tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


def test_the_same_examples_and_settings_train_the_same_model(tmp_path):
    tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(48))
    histories = []
    for run in ("first", "second"):
        job = run_fn_job.describe(
            [records],
            [records],
            str(tmp_path / "graph"),
            str(tmp_path / run),
            train_epochs=3,
            train_patience=100,
            batch_size=8,
            learning_rates=[1e-3],
            first_filters=[8],
            mixed_precision="float32",
        )
        command = run_fn_job.command(job, str(tmp_path / f"{run}.json"))
        subprocess.run(command, check=True, capture_output=True)
        with open(tmp_path / run / "run" / "history.json") as f:
            histories.append(json.load(f))
    first, second = histories
    # Initial weights, augmentation and mixup draws and the order of examples alike.
    assert first["loss"] == second["loss"]
    assert first["val_accuracy"] == second["val_accuracy"]
