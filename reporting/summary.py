"""run_summary.json: what a run found, read from its artifacts (through fileio, any filesystem)."""

from __future__ import annotations

import json
import os

from tfx.dsl.io import fileio

from components import data_gate, grid_tuner
from components.catalogue import classify as catalogue
from components.cover_example_gen import analysis
from reporting import evaluation
from reporting.run_artifacts import RunArtifacts

SUMMARY_FILE = "run_summary.json"
CSV_FACTS = (
    "csv",
    "csv_encoding",
    "undecodable_bytes",
    "data_lines",
    "rows_read",
    "lines_not_starting_a_row",
    "usable_rows",
    "skipped_rows",
)


def read_json(directory: str | None, name: str):
    """The JSON file `name` in an artifact directory; None when either is missing."""
    if not directory:
        return None
    path = os.path.join(directory, name)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())


def summarize(artifacts: RunArtifacts) -> dict:
    """Categories, CSV and ingestion counts, the grid search, test metrics and verdicts."""
    summary: dict = {}
    facts = read_json(artifacts.category_analysis, analysis.ANALYSIS_FILE)
    if facts:
        summary["categories"] = facts["selected_categories"]
        summary["csv"] = {k: facts[k] for k in CSV_FACTS if k in facts}
    ingest = read_json(artifacts.category_analysis, analysis.INGEST_FILE)
    if ingest:
        summary["examples"] = ingest["examples"]
        summary["ingestion"] = {k: v for k, v in ingest.items() if k != "examples"}

    verdict = read_json(artifacts.data_verdict, data_gate.VERDICT_FILE)
    if verdict is not None:
        summary["data_validation"] = verdict

    hyperparameters = read_json(artifacts.best_hyperparameters, "best_hyperparameters.txt")
    if hyperparameters:
        summary["best_hyperparameters"] = hyperparameters["values"]
    trials = read_json(artifacts.tuner_results, grid_tuner.TRIALS_JSON)
    if trials is not None:
        summary["tuner_trials"] = [{k: v for k, v in t.items() if k != "curves"} for t in trials]

    metrics = evaluation.overall_metrics(artifacts.evaluation) if artifacts.evaluation else {}
    summary["test_accuracy"] = metrics.get("categorical_accuracy")
    summary["test_top_3_accuracy"] = metrics.get("top_3_accuracy")
    summary["test_examples"] = metrics.get("example_count")
    summary["blessed"] = artifacts.blessed
    summary["blocked_reasons"] = (
        evaluation.blocked_reasons(artifacts.evaluation) if artifacts.evaluation else []
    )
    summary["pushed_model"] = artifacts.pushed_destination
    summary["training_run_dir"] = artifacts.model_run
    classified = read_json(artifacts.catalogue_predictions, catalogue.SUMMARY_FILE)
    if classified is not None:
        summary["catalogue"] = classified
    return summary
