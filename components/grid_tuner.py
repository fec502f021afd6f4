"""CoverTuner: TFX's Tuner, whose results also list every trial's epochs and curves, and
which honours TuneArgs(num_parallel_trials=N) on one node (components/parallel_tuner.py).

The curves come from the tuner that tuner_fn returns (models/tuning.RecordingGridSearch).
"""

from __future__ import annotations

import csv
import io
import json
import os

import keras_tuner
from tfx.components.tuner import component as tuner_component
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from bookcover import spreadsheet
from components import parallel_tuner

TRIALS_JSON = "trials.json"
TRIALS_CSV = "trials.csv"


def trial_table(tuner: keras_tuner.Tuner) -> list[dict]:
    """One row per trial in the order run: status, the grid's values, score, epochs run."""
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        trial_curves = tuner.trial_curves(trial_id) if hasattr(tuner, "trial_curves") else {}
        rows.append(
            {
                "trial_id": trial_id,
                "status": trial.status,
                "learning_rate": trial.hyperparameters.values.get("learning_rate"),
                "first_filters": trial.hyperparameters.values.get("first_filters"),
                "score": trial.score,
                "epochs_run": len(trial_curves.get("loss", [])),
                "best_epoch": trial.best_step + 1 if trial.score is not None else None,
                # More than 1 where a worker died in the trial and it ran again.
                "runs": tuner.oracle._run_times.get(trial_id, 0),
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
    writer.writerows({k: spreadsheet.safe_cell(v) for k, v in row.items()} for row in rows)
    # Through TFX's file I/O, so a gs:// or s3:// pipeline root works too.
    io_utils.write_string_file(os.path.join(out_dir, TRIALS_CSV), text.getvalue())


class Executor(tuner_executor.Executor):
    """TFX's Tuner executor plus trials.json / trials.csv in the tuner_results artifact."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        tune_args = tuner_executor.get_tune_args(exec_properties)
        workers = parallel_tuner.parallel_trials(tune_args.num_parallel_trials if tune_args else 0)
        if workers > 1:
            tuner = parallel_tuner.parallel_search(
                input_dict, exec_properties, self._get_tmp_dir(), workers
            )
        else:
            tuner = tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir())
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        results_dir = artifact_utils.get_single_uri(
            output_dict[standard_component_specs.TUNER_RESULTS_KEY]
        )
        write_trial_table(trial_table(tuner), results_dir)


class CoverTuner(tuner_component.Tuner):
    """The Tuner component with the trial-table executor."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
