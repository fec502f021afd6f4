"""DataGate's executor: every check on this run's data, one verdict, the step failed on findings."""

from __future__ import annotations

import json
import os

from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from bookcover import constants, model_versions, split_statistics
from components.data_gate.checks import (
    TRAIN,
    comparator_findings,
    custom_findings,
    empty_titles,
    finding_line,
    image_drift,
    missing_categories,
    schema_anomalies,
)

VERDICT_FILE = "verdict.json"


class DataValidationError(RuntimeError):
    """The data broke the schema or drifted; `findings` lists each problem."""

    def __init__(self, findings: list[dict]):
        self.findings = findings
        lines = "\n".join(f"  {finding_line(f)}" for f in findings)
        super().__init__(
            f"data validation found {len(findings)} problem(s); the run stops before "
            f"Transform (--allow-anomalies goes on knowingly):\n{lines}"
        )


def pushed_baseline(serving_model_dir: str) -> str | None:
    """The train statistics pushed beside the newest pushed model, if any."""
    if not serving_model_dir:
        return None
    for version in reversed(model_versions.versions(serving_model_dir)):
        path = os.path.join(serving_model_dir, str(version), constants.BASELINE_STATISTICS)
        if fileio.exists(path):
            return path
    return None


def load_baseline(path: str) -> tuple[object | None, list[dict]]:
    """The pushed model's train statistics, or a finding that says why they cannot be read
    (the drift checks cannot run without them, so the run stops unless allowed)."""
    import tensorflow_data_validation as tfdv

    try:
        statistics = tfdv.load_stats_binary(path)
        if statistics.datasets:
            return statistics, []
        error = "no dataset in it"
    except Exception as e:  # noqa: BLE001 - protobuf's and the filesystem's errors alike
        error = f"{type(e).__name__}: {e}"
    finding = {
        "split": TRAIN,
        "feature": "(all)",
        "problem": "unreadable baseline statistics",
        "detail": f"{path}: {error}; drift from the pushed model's data cannot be checked "
        "(push a model again, or remove the file to skip the drift checks)",
    }
    return None, [finding]


def validate(
    statistics_uri: str,
    anomalies_uri: str,
    schema_uri: str,
    serving_model_dir: str,
    validations: str = "",
    titles_read: bool = False,
):
    """Every finding for this run's data, and the baseline statistics it was compared with;
    `titles_read`: the model reads titles, so they must be there."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.load_schema_text(os.path.join(schema_uri, "schema.pbtxt"))
    by_split = split_statistics.load_split_statistics(statistics_uri)
    findings = schema_anomalies(anomalies_uri)
    findings += custom_findings(by_split, schema, validations)
    if titles_read:
        findings += empty_titles(by_split)
    if TRAIN in by_split:
        findings += missing_categories(by_split)
        for split, statistics in sorted(by_split.items()):
            if split != TRAIN:
                findings += comparator_findings(schema, by_split[TRAIN], split, serving=statistics)
    baseline = pushed_baseline(serving_model_dir)
    if baseline and TRAIN in by_split:
        previous, unreadable = load_baseline(baseline)
        findings += unreadable
        if previous is not None:
            findings += comparator_findings(schema, by_split[TRAIN], TRAIN, previous=previous)
            findings += image_drift(by_split[TRAIN], previous)
    return findings, baseline


class Executor(base_executor.BaseExecutor):
    """Writes verdict.json; fails the step on any finding unless anomalies are allowed."""

    # TFX calls this.
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        findings, baseline = validate(
            artifact_utils.get_single_uri(input_dict["statistics"]),
            artifact_utils.get_single_uri(input_dict["anomalies"]),
            artifact_utils.get_single_uri(input_dict["schema"]),
            exec_properties["serving_model_dir"],
            exec_properties.get("custom_validations") or "",
            bool(exec_properties.get("titles_read")),
        )
        allowed = bool(exec_properties["allow_anomalies"])
        verdict = {
            "findings": findings,
            "allowed": allowed and bool(findings),
            "drift_baseline": baseline,
        }
        verdict_dir = artifact_utils.get_single_uri(output_dict["verdict"])
        fileio.makedirs(verdict_dir)
        with fileio.open(os.path.join(verdict_dir, VERDICT_FILE), "w") as f:
            f.write(json.dumps(verdict, indent=2))
        if findings and not allowed:
            raise DataValidationError(findings)
