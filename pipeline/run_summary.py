"""run_summary.json: what the last pipeline run did, read back from ML Metadata."""

from __future__ import annotations

import json
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import grid_tuner
from components.cover_example_gen import analysis
from pipeline import evaluation

STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "executed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


def latest_run_outputs(store: metadata_store.MetadataStore, pipeline_name: str):
    """(components, outputs) of the newest run: per node its state and wall time,
    and per (node, output key) the output artifacts."""
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        raise RuntimeError(f"no run of pipeline {pipeline_name!r} in ML Metadata")
    pipeline_executions = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [
        r
        for r in store.get_contexts_by_type("pipeline_run")
        if {e.id for e in store.get_executions_by_context(r.id)} & pipeline_executions
    ]
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    components, outputs = {}, {}
    for execution in store.get_executions_by_context(run.id):
        node = _node_id(store, execution.id, pipeline_name)
        components[node] = {
            "status": STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state)),
            "wall_time_s": round(
                (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                / 1000.0,
                2,
            ),
        }
        events = [
            e
            for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            outputs.setdefault((node, key), []).append(artifacts[event.artifact_id])
    return run.name, components, outputs


def _node_id(store, execution_id: int, pipeline_name: str) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if context.name.startswith(pipeline_name + "."):
            return context.name[len(pipeline_name) + 1 :]
    return str(execution_id)


def first_uri(outputs, node: str, key: str) -> str | None:
    artifacts = outputs.get((node, key))
    return artifacts[0].uri if artifacts else None


def _custom_int(outputs, node: str, key: str, name: str) -> int | None:
    artifacts = outputs.get((node, key))
    if not artifacts or name not in artifacts[0].custom_properties:
        return None
    return artifacts[0].custom_properties[name].int_value


def build_summary(connection_config, pipeline_name: str) -> dict:
    store = metadata_store.MetadataStore(connection_config)
    run_id, components, outputs = latest_run_outputs(store, pipeline_name)
    summary: dict = {"pipeline": pipeline_name, "run_id": run_id}

    analysis_uri = first_uri(outputs, "CoverExampleGen", "category_analysis")
    if analysis_uri:
        with open(os.path.join(analysis_uri, analysis.ANALYSIS_FILE)) as f:
            facts = json.load(f)
        summary["categories"] = facts["selected_categories"]
        summary["csv"] = {
            k: facts[k]
            for k in (
                "csv",
                "csv_encoding",
                "undecodable_bytes",
                "data_lines",
                "rows_read",
                "lines_not_starting_a_row",
                "usable_rows",
                "skipped_rows",
            )
            if k in facts
        }
        with open(os.path.join(analysis_uri, analysis.INGEST_FILE)) as f:
            ingest = json.load(f)
        summary["examples"] = ingest["examples"]
        summary["ingestion"] = {k: v for k, v in ingest.items() if k != "examples"}

    hp_uri = first_uri(outputs, "Tuner", "best_hyperparameters")
    if hp_uri:
        with open(os.path.join(hp_uri, "best_hyperparameters.txt")) as f:
            summary["best_hyperparameters"] = json.load(f)["values"]
    tuner_uri = first_uri(outputs, "Tuner", "tuner_results")
    if tuner_uri:
        with open(os.path.join(tuner_uri, grid_tuner.TRIALS_JSON)) as f:
            trials = json.load(f)
        summary["tuner_trials"] = [{k: v for k, v in t.items() if k != "curves"} for t in trials]

    evaluation_uri = first_uri(outputs, "Evaluator", "evaluation")
    metrics = evaluation.overall_metrics(evaluation_uri) if evaluation_uri else {}
    summary["test_accuracy"] = metrics.get("categorical_accuracy")
    summary["test_top_3_accuracy"] = metrics.get("top_3_accuracy")
    summary["test_examples"] = metrics.get("example_count")
    summary["blessed"] = _custom_int(outputs, "Evaluator", "blessing", "blessed") == 1
    summary["blocked_reasons"] = (
        evaluation.blocked_reasons(evaluation_uri) if evaluation_uri else []
    )
    pushed = _custom_int(outputs, "Pusher", "pushed_model", "pushed") == 1
    summary["pushed_model"] = None
    if pushed:
        artifact = outputs[("Pusher", "pushed_model")][0]
        summary["pushed_model"] = artifact.custom_properties["pushed_destination"].string_value
    model_uri = first_uri(outputs, "Trainer", "model_run")
    summary["training_run_dir"] = model_uri
    summary["components"] = components
    return summary
