"""The Trainer's strategy and input: no idle epoch boundaries on one device or several.

An autotuned tf.data iterator makes its destruction wait for the autotuning
thread's next wake-up (up to a minute), and Keras destroys iterators at every
epoch boundary; MirroredStrategy's MultiDeviceIterator autotunes its per-device
datasets whatever the source says. These tests pin the choices that avoid both
without timing anything.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from models import inputs, model, trainer
from tests import run_fn_job, tiny_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategy")
    _, output = tiny_model.build_transform_graph(str(root))
    records = tiny_model.write_tfrecords(str(root / "train.gz"), tiny_model.raw_rows(30))
    return root, records, output


def test_one_device_trains_under_the_default_strategy():
    assert len(tf.config.list_logical_devices("CPU")) == 1
    strategy = trainer.training_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)


def test_every_dataset_handed_to_fit_runs_without_autotuning(data):
    root, records, output = data
    args = tfx.components.FnArgs(train_files=[records], eval_files=[records])
    for options in ({"mixup": 0.0, "class_weights": False}, {"mixup": 0.2}, {"mixup": 0.0}):
        hp = model.default_hyperparameters((1e-3,), (8,), options)
        train, evaluation = trainer.datasets(args, output, 4, hp, [10, 10, 10])
        assert isinstance(train, tf.data.Dataset) and isinstance(evaluation, tf.data.Dataset)
        assert train.options().autotune.enabled is False
        assert evaluation.options().autotune.enabled is False


def test_replicas_split_every_global_batch_between_them(data):
    _, records, output = data
    whole = list(inputs.input_fn([records], output, 8, shuffle=True))
    shares = [
        list(inputs.input_fn([records], output, 4, shuffle=True, replicas=2, replica=r))
        for r in (0, 1)
    ]
    # 30 covers in global batches of 8: 8, 8, 8, 6; every replica gets 4, 4, 4, 3.
    assert [len(x) for x, _ in shares[0]] == [len(x) for x, _ in shares[1]] == [4, 4, 4, 3]
    for k, (images, labels) in enumerate(whole):
        for r in (0, 1):
            np.testing.assert_array_equal(shares[r][k][0].numpy(), images.numpy()[r::2])
            np.testing.assert_array_equal(shares[r][k][1].numpy(), labels.numpy()[r::2])


def test_a_last_batch_too_small_to_share_is_dropped(data):
    _, records, output = data
    # 30 covers, global batches of 29 + 1: the single cover cannot go to both replicas.
    sizes = [len(x) for x, _ in inputs.input_fn([records], output, 29, False, replicas=2)]
    assert sizes == [15]


def test_run_fn_mirrors_over_two_logical_devices(data, tmp_path):
    root, records, _ = data
    job = run_fn_job.describe(
        [records],
        [records],
        str(root / "graph"),
        str(tmp_path),
        epochs=2,
        batch_size=4,
        learning_rates=[1e-3],
        first_filters=[8],
        mixed_precision="float32",
    )
    done = subprocess.run(
        run_fn_job.command(job, str(tmp_path / "job.json"), logical_cpus=2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 replica(s), global batch 8" in done.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["loss"]) == len(history["epoch_seconds"]) == 2
    assert os.path.exists(tmp_path / "serving" / "saved_model.pb")
