"""What a killed Trainer needs to resume exactly: the best epoch's weights and every epoch's
history, kept in the job's backup directory beside Keras' BackupAndRestore state.

Everything goes through fileio (a gs:// backup directory works) and is published
by rename: best.json names a weights file that is complete before it is named,
and history.json is replaced whole after each epoch.
"""

from __future__ import annotations

import json
import os

import keras
from tfx.dsl.io import fileio

STATE_DIR = "state"  # Keras' BackupAndRestore (it deletes this when training ends)
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

    Two callbacks, placed around Keras' BackupAndRestore, make every kill point safe:
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
        # BackupAndRestore, before this, has restored the last backed-up epoch's weights.
        last = self.record.last_epoch()
        if last is not None:
            self.record.save_best_if_better(self.model, *last)

    def on_epoch_end(self, epoch, logs=None):
        self.record.save_best_if_better(self.model, epoch, (logs or {}).get(self.record.monitor))
