"""The training backup survives SIGKILL at any moment, a save in progress included: the rerun
loads a whole weights file, and the weights of the very epoch the backup names."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import keras
import pytest

from models import resume

pytestmark = pytest.mark.pipeline  # runs training: make test

# A model whose weights take long to save (about 50 MB with Adam's slots), so most kill
# moments land inside a save, and whose weights record the epoch they belong to.
TRAIN = """
import sys, numpy as np, keras
from models import resume
from tests.test_backup_kills import build_model
model = build_model()
x, y = np.ones((8, 64), "float32"), np.zeros((8, 1), "float32")
print("training", flush=True)
model.fit(x, y, epochs=10_000, verbose=0, callbacks=[
    keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: model.epoch_seen.assign(epoch + 1)),
    resume.AtomicBackupAndRestore(sys.argv[1], delete_checkpoint=False),
    # After the backup callback, so each line says an epoch's backup is complete.
    keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print("backed up", flush=True)),
])
"""


def build_model() -> keras.Model:
    inputs = keras.Input((64,))
    outputs = keras.layers.Dense(1)(keras.layers.Dense(4096)(keras.layers.Dense(1024)(inputs)))
    model = keras.Model(inputs, outputs)
    # Not trainable, so training leaves it alone: only the callback sets it, just before
    # the backup of that epoch.
    model.epoch_seen = model.add_weight(shape=(), initializer="zeros", trainable=False)
    model.compile(optimizer="adam", loss="mse")
    return model


def restored(state_dir: str) -> tuple[int, int]:
    """(the epoch the backup says, the epoch its weights were saved at) in a fresh model."""
    model = build_model()
    backup = resume.AtomicBackupAndRestore(state_dir)
    backup.set_model(model)
    backup.on_train_begin()
    return model._initial_epoch or 0, int(model.epoch_seen.numpy())


def test_sigkill_at_random_moments_never_leaves_a_torn_or_mismatched_backup(tmp_path):
    seed = int(os.environ.get("BOOKCOVER_KILL_SEED", time.time()))
    rng = random.Random(seed)
    state_dir = str(tmp_path / "state")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    last_epoch = 0
    for round_ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", TRAIN, state_dir],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        context = f"round {round_} (BOOKCOVER_KILL_SEED={seed})"
        # A child that hangs is killed, so the reads below end instead of waiting for ever.
        watchdog = threading.Timer(300, child.kill)
        watchdog.start()
        assert child.stdout.readline().strip() == "training", context
        if round_ == 0:
            # Any moment from the start, so the kill may come before the first backup.
            time.sleep(rng.uniform(0.5, 2.5))
        else:
            # A moment counted from a finished backup, not from the start: on a slow machine
            # (CI took over 2.5 s to the first one) kills from the start never let a backup
            # finish. A save takes most of each epoch, so most moments land inside one.
            assert child.stdout.readline().strip() == "backed up", context  # the run's first
            time.sleep(rng.uniform(0.0, 1.0))
        watchdog.cancel()
        child.send_signal(signal.SIGKILL)
        child.wait()
        epoch, weights_epoch = restored(state_dir)
        # The weights are of the epoch the metadata names, and no backup went backwards.
        assert epoch == weights_epoch >= last_epoch, (context, epoch, weights_epoch)
        last_epoch = epoch
        metadata = os.path.join(state_dir, resume.METADATA_FILE)
        if epoch == 0 and not os.path.exists(metadata):
            # Killed before its first backup was complete (round 0 only): nothing is named,
            # so nothing may be restored, and the next round starts afresh.
            continue
        with open(metadata) as f:
            named = json.load(f)["weights"]
        # What a kill left mid-save is gone; the one file named stays.
        assert [n for n in os.listdir(state_dir) if n.endswith(".h5")] == [named], context
    assert last_epoch > 0, "no epoch was ever backed up"


def test_a_backup_written_by_keras_own_callback_still_resumes(tmp_path):
    """A run killed under an earlier version (Keras' BackupAndRestore) resumes too."""
    model = build_model()
    model.epoch_seen.assign(3)
    keras_backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    keras_backup.set_model(model)
    keras_backup.on_epoch_end(2)  # the backup after the third epoch
    assert sorted(os.listdir(tmp_path)) == [resume.LEGACY_WEIGHTS, resume.METADATA_FILE]
    assert restored(str(tmp_path)) == (3, 3)
