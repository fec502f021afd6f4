"""ReportGen: the pipeline's last step, writing the run's report and summary as an artifact."""

from __future__ import annotations

import json
import os

from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from bookcover import RunReport
from reporting import html_report, run_artifacts, summary
from reporting.run_artifacts import RunArtifacts

REPORT_KEY = run_artifacts.REPORT_KEY


class ReportGenSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        field: ChannelParameter(type=run_artifacts.artifact_type(source), optional=source.optional)
        for field, source in run_artifacts.REPORT_INPUTS.items()
    }
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
        required = {f for f, source in run_artifacts.REPORT_INPUTS.items() if not source.optional}
        missing = required - set(inputs)
        if missing:
            raise ValueError(f"ReportGen needs the channels {sorted(missing)}")
        super().__init__(spec=ReportGenSpec(**inputs, report=channel.Channel(type=RunReport)))
