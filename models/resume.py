"""What a killed Trainer needs to resume exactly: the best epoch's weights and every epoch's
history, kept in the job's backup directory beside the training state's own backup.

Everything goes through fileio (a gs:// backup directory works) and is published
by rename: best.json names a weights file that is complete before it is named,
history.json is replaced whole after each epoch, and so is the backup's
training_metadata.json, which names the epoch's weights file (`AtomicBackupAndRestore`).
"""

from __future__ import annotations

import json
import logging
import os

import keras
from tfx.dsl.io import fileio

METADATA_FILE = "training_metadata.json"  # Keras' name, so its format stays readable
LEGACY_WEIGHTS = "latest.weights.h5"  # where Keras' own callback keeps the weights

STATE_DIR = "state"  # AtomicBackupAndRestore's (it deletes this when training ends)
BEST_FILE = "best.json"
HISTORY_FILE = "history.json"
EPOCH_KEY = "epoch"


def read_json(path: str):
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def write_json(path: str, value) -> None:
    tmp = f"{path}.tmp"
    with fileio.open(tmp, "w") as f:
        f.write(json.dumps(value, indent=2))
    fileio.rename(tmp, path, overwrite=True)


class TrainingRecord:
    """The history of every epoch and the weights of the best one (by `monitor`), kept in
    `job_dir` across kills, so a rerun continues the same record.

    Two callbacks, placed around AtomicBackupAndRestore, make every kill point safe:
    `history_callback` (before it) writes an epoch's logs before the backup says the
    epoch is done, so a rerun epoch replaces its entry; `best_callback` (after it)
    saves the best weights once the epoch is backed up, and on resume saves the
    restored weights if the last recorded epoch was the best and its save was cut off.
    """

    def __init__(self, job_dir: str, monitor: str = "val_accuracy"):
        self.job_dir, self.monitor = job_dir, monitor
        fileio.makedirs(job_dir)
        self.history: dict[str, list] = read_json(self._path(HISTORY_FILE)) or {}
        self.best: dict | None = read_json(self._path(BEST_FILE))
        self.history_callback = _HistoryCallback(self)
        self.best_callback = _BestCallback(self)

    def _path(self, name: str) -> str:
        return os.path.join(self.job_dir, name)

    @property
    def best_weights(self) -> str | None:
        return self._path(self.best["weights"]) if self.best else None

    def epochs_history(self) -> dict[str, list[float]]:
        """Every epoch's logs, in order, without the epoch index."""
        return {k: v for k, v in self.history.items() if k != EPOCH_KEY}

    def last_epoch(self) -> tuple[int, float | None] | None:
        epochs = self.history.get(EPOCH_KEY, [])
        if not epochs:
            return None
        scores = self.history.get(self.monitor, [])
        return int(epochs[-1]), (scores[-1] if len(scores) == len(epochs) else None)

    def save_best_if_better(self, model, epoch: int, score: float | None) -> None:
        if score is None or (self.best is not None and score <= self.best["score"]):
            return
        previous = self.best_weights
        name = f"best-epoch{epoch}.weights.h5"
        model.save_weights(self._path(name))
        self.best = {
            "epoch": epoch,
            "score": float(score),
            "monitor": self.monitor,
            "weights": name,
        }
        write_json(self._path(BEST_FILE), self.best)
        if previous and previous != self._path(name) and fileio.exists(previous):
            fileio.remove(previous)


class _HistoryCallback(keras.callbacks.Callback):
    def __init__(self, record: TrainingRecord):
        super().__init__()
        self.record = record

    def on_epoch_begin(self, epoch, logs=None):
        # An epoch being run again (killed before its backup) replaces its old entry.
        history = self.record.history
        keep = sum(1 for e in history.get(EPOCH_KEY, []) if e < epoch)
        self.record.history = {k: v[:keep] for k, v in history.items()}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in {EPOCH_KEY: epoch, **(logs or {})}.items():
            self.record.history.setdefault(key, []).append(float(value))
        write_json(self.record._path(HISTORY_FILE), self.record.history)


class _BestCallback(keras.callbacks.Callback):
    def __init__(self, record: TrainingRecord):
        super().__init__()
        self.record = record

    def on_train_begin(self, logs=None):
        # AtomicBackupAndRestore, before this, has restored the last backed-up epoch's weights.
        last = self.record.last_epoch()
        if last is not None:
            self.record.save_best_if_better(self.model, *last)

    def on_epoch_end(self, epoch, logs=None):
        self.record.save_best_if_better(self.model, epoch, (logs or {}).get(self.record.monitor))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with every backup published in one rename.

    Keras overwrites `latest.weights.h5` in place and then its metadata, so a kill during
    the save leaves a torn HDF5 file that the rerun fails to open ("bad object header
    version number"), and a kill between the two pairs one epoch's weights with another
    epoch's number. Here each epoch's weights go to a file of their own, complete before
    training_metadata.json (replaced by rename) names them; the previous file is removed
    only after. A rerun loads exactly the pair the metadata names; files it does not name
    are what a kill left mid-save, and are removed.
    """

    def _save_model(self):
        fileio.makedirs(self.backup_dir)
        name = f"epoch{self._current_epoch}-batch{self._last_batch_seen}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        write_json(os.path.join(self.backup_dir, METADATA_FILE), {**metadata, "weights": name})
        self._remove_unnamed_weights(keep=name)

    def _load_model(self):
        if not self.model.built:
            super()._load_model()  # Keras' own error for an unbuilt model
        metadata = read_json(os.path.join(self.backup_dir, METADATA_FILE))
        if metadata is None:
            self._remove_unnamed_weights(keep=None)
            return
        weights = os.path.join(self.backup_dir, metadata.get("weights", LEGACY_WEIGHTS))
        if self.model.optimizer is not None and not self.model.optimizer.built:
            # The optimizer's slots must exist before the weights file fills them.
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        self.model._initial_epoch = metadata["epoch"]
        self._remove_unnamed_weights(keep=os.path.basename(weights))
        logging.info("resumed from the backup of epoch %d (%s)", metadata["epoch"], weights)

    def _remove_unnamed_weights(self, keep: str | None) -> None:
        if not fileio.exists(self.backup_dir):
            return
        for name in fileio.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name != keep:
                fileio.remove(os.path.join(self.backup_dir, name))
