"""ReportGen: the pipeline's last step, writing the run's report and summary as an artifact."""

from __future__ import annotations

import json
import os

from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from bookcover import CategoryAnalysis, DataVerdict, RunReport
from reporting import html_report, summary
from reporting.run_artifacts import RunArtifacts

REPORT_KEY = "report"
INPUT_TYPES = {
    "examples": standard_artifacts.Examples,
    "category_analysis": CategoryAnalysis,
    "statistics": standard_artifacts.ExampleStatistics,
    "anomalies": standard_artifacts.ExampleAnomalies,
    "data_verdict": DataVerdict,
    "best_hyperparameters": standard_artifacts.HyperParameters,
    "tuner_results": standard_artifacts.TunerResults,
    "transform_graph": standard_artifacts.TransformGraph,
    "model": standard_artifacts.Model,
    "model_run": standard_artifacts.ModelRun,
    "evaluation": standard_artifacts.ModelEvaluation,
    "blessing": standard_artifacts.ModelBlessing,
    "pushed_model": standard_artifacts.PushedModel,
}


class ReportGenSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {key: ChannelParameter(type=kind) for key, kind in INPUT_TYPES.items()}
    OUTPUTS = {REPORT_KEY: ChannelParameter(type=RunReport)}


class Executor(base_executor.BaseExecutor):
    """Reads the run's artifacts and writes index.html, its PNGs and run_summary.json."""

    # TFX calls this.
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        artifacts = RunArtifacts.from_artifacts(input_dict)
        report_dir = artifact_utils.get_single_uri(output_dict[REPORT_KEY])
        found = summary.summarize(artifacts)
        # None on orchestrators that do not say (Kubeflow's container entry point).
        found["run_id"] = self._context.pipeline_run_id if self._context else None
        html_report.write_report(artifacts, found, report_dir)
        with fileio.open(os.path.join(report_dir, summary.SUMMARY_FILE), "w") as f:
            f.write(json.dumps(found, indent=2))


class ReportGen(base_component.BaseComponent):
    """The run report as a cached, orchestrator-independent pipeline step."""

    SPEC_CLASS = ReportGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, **inputs: channel.BaseChannel):
        missing = set(INPUT_TYPES) - set(inputs)
        if missing:
            raise ValueError(f"ReportGen needs the channels {sorted(missing)}")
        super().__init__(spec=ReportGenSpec(**inputs, report=channel.Channel(type=RunReport)))
