"""keras-tuner's grid search that records each trial's epoch curves and logs one line per trial."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time

import keras
import keras_tuner
from tfx.dsl.io import fileio

from bookcover import progress

CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")
CURVES_FILE = "curves.json"  # in each trial's directory, for the chief of a parallel search
IDLE_WAIT_S = 1.0  # a worker's wait before asking again when the grid is busy


class RecordingGridSearch(keras_tuner.GridSearch):
    """GridSearch that remembers each trial's per-epoch metrics.

    keras-tuner hands its oracle only the best epoch of a trial, so how many
    epochs early stopping let a trial run is otherwise lost.
    """

    def __init__(self, *args, trial_data=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.curves: dict[str, dict[str, list[float]]] = {}
        self._requests = self._begun = 0
        # () -> (training, validation) datasets, made anew for each trial after its seed
        # is set: a dataset shared by the trials would carry its shuffle order on from
        # one trial to the next, so a trial's score would depend on the trials before it.
        self.trial_data = trial_data

    def run_trial(self, trial, *args, **kwargs):
        if self.trial_data is not None:
            kwargs["x"], kwargs["validation_data"] = self.trial_data()
        return super().run_trial(trial, *args, **kwargs)

    # TFX's Tuner executor prints both summaries: to the log file instead.
    def search_space_summary(self, extended=False):
        _log_printed(super().search_space_summary, extended)

    def results_summary(self, num_trials=10):
        _log_printed(super().results_summary, num_trials)

    def pre_create_trial(self):
        if self._is_worker() and self._requests > self._begun:
            time.sleep(IDLE_WAIT_S)  # the grid was busy (IDLE): no busy loop on the chief
        self._requests += 1

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._begun += 1
        # A trial's result depends on its values only, not on which trials ran before it
        # in this process: a parallel search finds what a sequential one finds.
        keras.utils.set_random_seed(trial_seed(trial.hyperparameters.values))

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if not self._is_worker():  # a parallel search's chief logs its workers' trials
            self.log_trial(self.oracle.trials[trial.trial_id])

    def log_trial(self, trial) -> None:
        """One line: which trial of the grid, its values, its score and epochs run."""
        values = ", ".join(
            f"{k} {v:g}"
            for k, v in trial.hyperparameters.values.items()
            if k in ("learning_rate", "first_filters")
        )
        epochs = len(self.trial_curves(trial.trial_id).get("loss", []))
        score = "failed" if trial.score is None else f"val_accuracy {trial.score:.3f}"
        progress.LOGGER.info(
            "Tuner: trial %d/%d (%s): %s after %d epoch(s)",
            len(self.oracle.end_order),
            grid_size(self.oracle.hyperparameters),
            values,
            score,
            epochs,
        )

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs)
        curves = self.curves.setdefault(trial.trial_id, {m: [] for m in CURVE_METRICS})
        for metric in CURVE_METRICS:
            if logs and metric in logs:
                curves[metric].append(float(logs[metric]))
        # Also on disk: in a parallel search the chief's table reads them from there.
        path = os.path.join(self.get_trial_dir(trial.trial_id), CURVES_FILE)
        with fileio.open(f"{path}.tmp", "w") as f:
            f.write(json.dumps(curves))
        fileio.rename(f"{path}.tmp", path, overwrite=True)

    def trial_curves(self, trial_id: str) -> dict[str, list[float]]:
        """The trial's per-epoch metrics, recorded here or by the worker that ran it."""
        if trial_id in self.curves:
            return self.curves[trial_id]
        path = os.path.join(self.get_trial_dir(trial_id), CURVES_FILE)
        if not fileio.exists(path):
            return {}
        with fileio.open(path) as f:
            return json.loads(f.read())


def trial_seed(values: dict, offset: int = 0) -> int:
    """A seed from a trial's hyperparameter values, the same in every process; `offset`
    (an ensemble's member) gives another, still in the 32 bits NumPy's seed takes."""
    text = json.dumps(values, sort_keys=True, default=str)
    return (int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") + offset) % 2**32


def _log_printed(summary, *args) -> None:
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        summary(*args)
    logging.getLogger("keras_tuner").info(text.getvalue())


def grid_size(hyperparameters: keras_tuner.HyperParameters) -> int:
    """How many trials the grid has: the product of every Choice's values."""
    size = 1
    for hp in hyperparameters.space:
        size *= len(getattr(hp, "values", None) or [None])
    return size
