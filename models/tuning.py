"""keras-tuner's grid search that records each trial's epoch curves and logs one line per trial."""

from __future__ import annotations

import contextlib
import io
import logging

import keras_tuner

from bookcover import progress

CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


class RecordingGridSearch(keras_tuner.GridSearch):
    """GridSearch that remembers each trial's per-epoch metrics.

    keras-tuner hands its oracle only the best epoch of a trial, so how many
    epochs early stopping let a trial run is otherwise lost.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.curves: dict[str, dict[str, list[float]]] = {}

    # TFX's Tuner executor prints both summaries: to the log file instead.
    def search_space_summary(self, extended=False):
        _log_printed(super().search_space_summary, extended)

    def results_summary(self, num_trials=10):
        _log_printed(super().results_summary, num_trials)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        values = ", ".join(
            f"{k} {v:g}"
            for k, v in trial.hyperparameters.values.items()
            if k in ("learning_rate", "first_filters")
        )
        epochs = len(self.curves.get(trial.trial_id, {}).get("loss", []))
        score = "failed" if trial.score is None else f"val_accuracy {trial.score:.3f}"
        progress.LOGGER.info(
            "Tuner: trial %d/%d (%s): %s after %d epoch(s)",
            len(self.oracle.trials),
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
