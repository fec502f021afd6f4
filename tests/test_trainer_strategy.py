"""The Trainer's strategy and input: no idle epoch boundaries on one device or several.

An autotuned tf.data iterator makes its destruction wait for the autotuning
thread's next wake-up (up to a minute), and Keras destroys iterators at every
epoch boundary; MirroredStrategy's MultiDeviceIterator autotunes its per-device
datasets whatever the source says. These tests pin the choices that avoid both
without timing anything; and a mirrored run's outputs serve their real consumers:
TF Serving's loader path and TensorBoard.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import tensorflow as tf
from tfx import v1 as tfx

from models import inputs, model, trainer
from tests import images as test_images
from tests import run_fn_job, saved_model_loaders, tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


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


@pytest.fixture(scope="module")
def mirrored_run(data, tmp_path_factory):
    """A real run_fn over two logical devices: (its output dir, its stderr)."""
    root, records, _ = data
    out = tmp_path_factory.mktemp("mirrored")
    job = run_fn_job.describe(
        [records],
        [records],
        str(root / "graph"),
        str(out),
        train_epochs=2,
        batch_size=4,
        learning_rates=[1e-3],
        first_filters=[8],
        mixed_precision="float32",
    )
    done = subprocess.run(
        run_fn_job.command(job, str(out / "job.json"), logical_cpus=2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stderr


def test_run_fn_mirrors_over_two_logical_devices(mirrored_run):
    out, stderr = mirrored_run
    assert "training on 2 replica(s), global batch 8" in stderr
    history = json.loads((out / "run" / "history.json").read_text())
    assert len(history["loss"]) == len(history["epoch_seconds"]) == 2
    assert os.path.exists(out / "serving" / "saved_model.pb")


def test_a_mirrored_export_runs_in_tf_servings_loader(mirrored_run):
    """Variables created under MirroredStrategy restore in a TF1 Session too."""
    out, _ = mirrored_run
    covers = np.array([test_images.jpeg(), test_images.png()], dtype=object)
    served = saved_model_loaders.run_tf1(
        str(out / "serving"), "serving_default", {"images": covers}
    )
    direct = saved_model_loaders.run_tf2(
        str(out / "serving"), "serving_default", {"images": covers}
    )
    saved_model_loaders.assert_same_outputs(served, direct)


def test_tensorboard_serves_the_trainers_curves(mirrored_run):
    """`tensorboard --logdir <run dir>/tensorboard` starts and serves the epoch curves."""
    out, _ = mirrored_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    process = subprocess.Popen(
        [
            tensorboard,
            "--logdir",
            str(out / "run" / "tensorboard"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, tags = time.monotonic() + 120, {}
        while not any("epoch_accuracy" in run_tags for run_tags in tags.values()):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"no epoch_accuracy in {tags}"
            time.sleep(0.5)
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                tags = requests.get(url, timeout=5).json()
            except (requests.ConnectionError, ValueError):
                pass
        assert {"train", "validation"} <= set(tags)
        assert "epoch_accuracy" in tags["validation"] and "epoch_loss" in tags["train"]
    finally:
        process.terminate()
        process.wait(10)
