"""A Trainer killed mid-training resumes from its backup and exports the best epoch of all,
before and after the kill, with every epoch in its history."""

import collections
import glob
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tests import run_fn_job, tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

EPOCHS = 8


def start_training(job, job_path):
    return subprocess.Popen(
        run_fn_job.command(job, job_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def weight_arrays(h5_path: str) -> list[np.ndarray]:
    arrays = []
    with h5py.File(h5_path, "r") as f:
        f.visititems(
            lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def signature(arrays) -> list[tuple]:
    """Order-free fingerprint of a set of weight arrays."""
    return sorted((a.shape, round(float(np.sum(np.abs(a))), 4)) for a in arrays if a.size > 1)


def test_sigkilled_training_resumes_and_exports_the_best_epoch_of_all(tmp_path):
    _, _ = tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(120))
    backup_dir = tmp_path / "backup"
    job = run_fn_job.describe(
        [records],
        [records],
        str(tmp_path / "graph"),
        str(tmp_path),
        train_epochs=EPOCHS,
        train_patience=100,
        batch_size=8,
        learning_rates=[1e-3],
        first_filters=[16],
        mixed_precision="float32",
    )
    job_path = str(tmp_path / "job.json")
    first = start_training(job, job_path)
    deadline = time.monotonic() + 300
    state = str(backup_dir / "*" / "state" / "training_metadata.json")
    while True:
        backed_up = glob.glob(state)
        if backed_up and json.load(open(backed_up[0]))["epoch"] >= 2:  # two epochs done
            break
        assert first.poll() is None, "training ended before two epochs were backed up"
        assert time.monotonic() < deadline, "no backup appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (job_dir,) = glob.glob(str(backup_dir / "*"))
    # Killed just after a backup: the best epoch's save may not have happened yet; the
    # rerun must still export the best of what the history recorded.
    with open(os.path.join(job_dir, "history.json")) as f:
        before = json.load(f)
    epochs_before_kill = before["epoch"]
    assert len(epochs_before_kill) >= 1
    best_before_kill = {
        "epoch": int(np.argmax(before["val_accuracy"])),
        "score": max(before["val_accuracy"]),
    }
    assert not os.path.exists(tmp_path / "serving" / "saved_model.pb")

    second = start_training(job, job_path)
    assert second.wait(timeout=600) == 0
    with open(tmp_path / "run" / "history.json") as f:
        history = json.load(f)
    with open(tmp_path / "run" / "best_epoch.json") as f:
        best = json.load(f)
    # Every epoch once, those before the kill included.
    assert len(history["val_accuracy"]) == len(history["loss"]) == EPOCHS
    scores = history["val_accuracy"]
    assert best["epoch"] == int(np.argmax(scores)) and best["score"] == max(scores)
    assert best["score"] >= best_before_kill["score"]
    after_kill = scores[len(epochs_before_kill) :]
    if max(after_kill) <= best_before_kill["score"]:  # the best came before the kill
        assert best["epoch"] == best_before_kill["epoch"] < len(epochs_before_kill)
    # The exported model holds exactly the best epoch's weights.
    exported = tf.saved_model.load(str(tmp_path / "serving"))
    # (The weights file also holds the optimizer's slots; augmentation's random seed
    # states move on after the best epoch and are no weights.)
    weights = [v.numpy() for v in exported.model_variables if "seed_generator" not in v.name]
    exported_arrays = collections.Counter(signature(weights))
    saved_arrays = collections.Counter(
        signature(weight_arrays(str(tmp_path / "run" / "best.weights.h5")))
    )
    assert exported_arrays and not exported_arrays - saved_arrays
    assert not os.path.exists(job_dir)  # cleaned up once exported
