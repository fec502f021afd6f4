"""The artifacts a report reads: the ReportGen step's inputs, or ML Metadata's latest run."""

from __future__ import annotations

import dataclasses

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "executed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


@dataclasses.dataclass(frozen=True)
class ReportInput:
    """One artifact a report reads: the pipeline node and output key that make it, its type."""

    node: str
    key: str
    type_name: str  # an attribute of tfx.types.standard_artifacts, or of bookcover
    optional: bool = False  # made by a step that only some runs have


# Every artifact a report reads, by RunArtifacts field. ReportGen's inputs, their
# wiring in pipeline.create_pipeline and the lookup in ML Metadata all come from here.
REPORT_INPUTS = {
    "examples": ReportInput("CoverExampleGen", "examples", "Examples"),
    "category_analysis": ReportInput("CoverExampleGen", "category_analysis", "CategoryAnalysis"),
    "statistics": ReportInput("StatisticsGen", "statistics", "ExampleStatistics"),
    "anomalies": ReportInput("ExampleValidator", "anomalies", "ExampleAnomalies"),
    "data_verdict": ReportInput("DataGate", "verdict", "DataVerdict"),
    "best_hyperparameters": ReportInput("Tuner", "best_hyperparameters", "HyperParameters"),
    "tuner_results": ReportInput("Tuner", "tuner_results", "TunerResults"),
    "transform_graph": ReportInput("Transform", "transform_graph", "TransformGraph"),
    "model": ReportInput("Trainer", "model", "Model"),
    "model_run": ReportInput("Trainer", "model_run", "ModelRun"),
    "evaluation": ReportInput("Evaluator", "evaluation", "ModelEvaluation"),
    "blessing": ReportInput("Evaluator", "blessing", "ModelBlessing"),
    "pushed_model": ReportInput("Pusher", "pushed_model", "PushedModel"),
    "catalogue_predictions": ReportInput(
        "ClassifyCatalogue", "predictions", "CataloguePredictions", optional=True
    ),
}
REPORT_NODE, REPORT_KEY = "ReportGen", "report"


def artifact_type(report_input: ReportInput) -> type:
    """The artifact class of a report input: TFX's standard one, or the project's own."""
    from tfx.types import standard_artifacts

    import bookcover

    if report_input.type_name in bookcover.ARTIFACT_TYPES:
        return getattr(bookcover, report_input.type_name)
    return getattr(standard_artifacts, report_input.type_name)


@dataclasses.dataclass
class RunArtifacts:
    """URIs of one run's outputs: one field per REPORT_INPUTS entry (None where a step made
    none; tests/test_run_artifacts.py holds the two lists equal), then whether the model was
    blessed, where it was pushed, and the report's URI."""

    examples: str | None = None
    category_analysis: str | None = None
    statistics: str | None = None
    anomalies: str | None = None
    data_verdict: str | None = None
    best_hyperparameters: str | None = None
    tuner_results: str | None = None
    transform_graph: str | None = None
    model: str | None = None
    model_run: str | None = None
    evaluation: str | None = None
    blessing: str | None = None
    pushed_model: str | None = None
    catalogue_predictions: str | None = None
    blessed: bool = False
    pushed_destination: str | None = None
    report: str | None = None

    @classmethod
    def from_artifacts(cls, by_field: dict[str, list]) -> RunArtifacts:
        """From TFX Artifact lists keyed like the fields (the ReportGen executor's inputs)."""
        from bookcover.artifacts import flag

        found = cls(**{k: v[0].uri for k, v in by_field.items() if v and k in REPORT_INPUTS})
        if by_field.get("blessing"):
            found.blessed = flag(by_field["blessing"][0], "blessed")
        if by_field.get("pushed_model") and flag(by_field["pushed_model"][0], "pushed"):
            destination = by_field["pushed_model"][0].get_custom_property("pushed_destination")
            found.pushed_destination = destination or None
        return found


@dataclasses.dataclass
class LatestRun:
    """The newest run of a pipeline in ML Metadata: its id, each node's state, its outputs."""

    run_id: str
    components: dict[str, dict]
    artifacts: RunArtifacts


def latest_run(connection_config, pipeline_name: str) -> LatestRun:
    """Reads ML Metadata once for the newest run of `pipeline_name`."""
    from tfx.types import artifact_utils

    store = metadata_store.MetadataStore(connection_config)
    run_id, components, outputs = _latest_run_outputs(store, pipeline_name)
    by_field = {}
    for field, source in REPORT_INPUTS.items():
        if outputs.get((source.node, source.key)):
            by_field[field] = _deserialize(store, outputs[source.node, source.key], artifact_utils)
    artifacts = RunArtifacts.from_artifacts(by_field)
    if outputs.get((REPORT_NODE, REPORT_KEY)):
        artifacts.report = outputs[(REPORT_NODE, REPORT_KEY)][0].uri
    return LatestRun(run_id, components, artifacts)


def _deserialize(store, mlmd_artifacts: list, artifact_utils) -> list:
    types = {t.id: t for t in store.get_artifact_types_by_id([a.type_id for a in mlmd_artifacts])}
    return [artifact_utils.deserialize_artifact(types[a.type_id], a) for a in mlmd_artifacts]


def _latest_run_outputs(store: metadata_store.MetadataStore, pipeline_name: str):
    """(run id, components, outputs) of the newest run: per node its state and wall time,
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
