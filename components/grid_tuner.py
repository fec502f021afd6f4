"""CoverTuner: TFX's Tuner, whose results also list every trial's epochs and curves."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os

import keras_tuner
from tfx.components.tuner import component as tuner_component
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from bookcover import progress

TRIALS_JSON = "trials.json"
TRIALS_CSV = "trials.csv"
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


def trial_table(tuner: keras_tuner.Tuner) -> list[dict]:
    """One row per trial in the order run: status, the grid's values, score, epochs run."""
    curves = getattr(tuner, "curves", {})
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        trial_curves = curves.get(trial_id, {})
        rows.append(
            {
                "trial_id": trial_id,
                "status": trial.status,
                "learning_rate": trial.hyperparameters.values.get("learning_rate"),
                "first_filters": trial.hyperparameters.values.get("first_filters"),
                "score": trial.score,
                "epochs_run": len(trial_curves.get("loss", [])),
                "best_epoch": trial.best_step + 1 if trial.score is not None else None,
                "curves": trial_curves,
            }
        )
    return rows


def write_trial_table(rows: list[dict], out_dir: str) -> None:
    io_utils.write_string_file(os.path.join(out_dir, TRIALS_JSON), json.dumps(rows, indent=2))
    columns = [k for k in rows[0] if k != "curves"] if rows else ["trial_id"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    # Through TFX's file I/O, so a gs:// or s3:// pipeline root works too.
    io_utils.write_string_file(os.path.join(out_dir, TRIALS_CSV), text.getvalue())


class Executor(tuner_executor.Executor):
    """TFX's Tuner executor plus trials.json / trials.csv in the tuner_results artifact."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        if tuner_executor.get_tune_args(exec_properties):
            raise ValueError("TuneArgs is not supported by this Tuner's Executor.")
        tuner = tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir())
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        results_dir = artifact_utils.get_single_uri(
            output_dict[standard_component_specs.TUNER_RESULTS_KEY]
        )
        write_trial_table(trial_table(tuner), results_dir)


class CoverTuner(tuner_component.Tuner):
    """The Tuner component with the trial-table executor."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
