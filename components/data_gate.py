"""DataGate: stops the run before Transform when the data breaks the reviewed schema or drifts.

It gathers every finding into one verdict: the ExampleValidator's anomalies
(each split against the reviewed schema), the reviewed SQL checks of
schema/validations.pbtxt, categories of the
train split missing from another split, split skew (TFDV's L-infinity skew
comparator on category shares), and drift from the data the pushed model was
trained on (TFDV's drift comparator on category shares; image format shares
and mean cover size). Any finding fails the step, on every orchestrator,
unless the run allows anomalies; the verdict artifact records what was found
and whether it was allowed.
"""

from __future__ import annotations

import json
import os

from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from bookcover import DataVerdict, constants

VERDICT_FILE = "verdict.json"
# Image format shares may differ this much (L-infinity) from the pushed model's data,
# and the mean stored cover size this much (relative). Category shares are compared
# by the schema's own drift comparator.
IMAGE_FORMAT_DRIFT_LINF = 0.1
COVER_BYTES_DRIFT = 0.5
IMAGE_FORMAT_HISTOGRAM = "image_format_histogram"  # TFDV's image semantic domain statistic
TRAIN = "train"


class DataValidationError(RuntimeError):
    """The data broke the schema or drifted; `findings` lists each problem."""

    def __init__(self, findings: list[dict]):
        self.findings = findings
        lines = "\n".join(f"  {finding_line(f)}" for f in findings)
        super().__init__(
            f"data validation found {len(findings)} problem(s); the run stops before "
            f"Transform (--allow-anomalies goes on knowingly):\n{lines}"
        )


def finding_line(finding: dict) -> str:
    """One line per finding: where, what was expected, what was found."""
    return f"{finding['split']}: {finding['feature']}: {finding['problem']}: {finding['detail']}"


# --- Reading statistics ------------------------------------------------------


def load_split_statistics(statistics_uri: str) -> dict:
    """Split name -> DatasetFeatureStatisticsList, from a StatisticsGen artifact."""
    import tensorflow_data_validation as tfdv

    found = {}
    for path in fileio.glob(os.path.join(statistics_uri, "Split-*", "FeatureStats.pb")):
        split = os.path.basename(os.path.dirname(path))[len("Split-") :]
        found[split] = tfdv.load_stats_binary(path)
    return found


def feature_stats(statistics, name: str):
    for feature in statistics.datasets[0].features:
        if feature.path.step and feature.path.step[-1] == name:
            return feature
    return None


def category_counts(statistics) -> dict[str, float]:
    feature = feature_stats(statistics, constants.CATEGORY_KEY)
    if feature is None:
        return {}
    buckets = feature.string_stats.rank_histogram.buckets
    return {b.label: b.sample_count for b in buckets}


def image_formats(statistics) -> dict[str, float]:
    """Share of each image format, when TFDV computed them (at least 100 covers)."""
    feature = feature_stats(statistics, constants.IMAGE_KEY)
    for custom in feature.custom_stats if feature else []:
        if custom.name == IMAGE_FORMAT_HISTOGRAM:
            counts = {b.label: b.sample_count for b in custom.rank_histogram.buckets}
            total = sum(counts.values()) or 1.0
            return {label: n / total for label, n in counts.items()}
    return {}


def mean_cover_bytes(statistics) -> float | None:
    feature = feature_stats(statistics, constants.IMAGE_KEY)
    if feature is None or not feature.HasField("bytes_stats"):
        return None
    return feature.bytes_stats.avg_num_bytes


# --- The checks ---------------------------------------------------------------


def schema_anomalies(anomalies_uri: str) -> list[dict]:
    """The ExampleValidator's anomalies, one finding per split and feature."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    findings = []
    for path in sorted(fileio.glob(os.path.join(anomalies_uri, "Split-*", "SchemaDiff.pb"))):
        split = os.path.basename(os.path.dirname(path))[len("Split-") :]
        with fileio.open(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            findings.append(
                {
                    "split": split,
                    "feature": feature,
                    "problem": info.short_description,
                    "detail": " ".join(r.description for r in info.reason) or info.description,
                }
            )
        findings.extend(_dataset_anomalies(split, anomalies))
    return findings


def _dataset_anomalies(split: str, anomalies) -> list[dict]:
    info = anomalies.dataset_anomaly_info
    return [
        {"split": split, "feature": "(dataset)", "problem": r.short_description, "detail": ""}
        for r in info.reason
    ]


def custom_findings(by_split: dict, schema, validations: str) -> list[dict]:
    """The reviewed SQL checks (schema/validations.pbtxt) on each split's statistics."""
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_data_validation.anomalies.proto import custom_validation_config_pb2
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    if not validations.strip():
        return []
    config = text_format.Parse(validations, custom_validation_config_pb2.CustomValidationConfig())
    custom = anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION
    findings = []
    for split, statistics in sorted(by_split.items()):
        anomalies = tfdv.validate_statistics(statistics, schema, custom_validation_config=config)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            for reason in (r for r in info.reason if r.type == custom):
                found = _shares(image_formats(statistics)) if feature == "image" else ""
                findings.append(
                    {
                        "split": split,
                        "feature": feature,
                        "problem": reason.short_description,
                        "detail": f"found {found}" if found else reason.description,
                    }
                )
    return findings


def missing_categories(by_split: dict) -> list[dict]:
    """Categories of the train split that another split lacks entirely."""
    train = category_counts(by_split[TRAIN])
    findings = []
    for split, statistics in sorted(by_split.items()):
        if split == TRAIN:
            continue
        present = category_counts(statistics)
        for category in sorted(c for c in train if present.get(c, 0) == 0):
            findings.append(
                {
                    "split": split,
                    "feature": constants.CATEGORY_KEY,
                    "problem": "a selected category is missing",
                    "detail": f"'{category}' has {train[category]:g} train covers and none in "
                    f"{split}: expected every selected category in every split",
                }
            )
    return findings


def comparator_findings(schema, current, split: str, serving=None, previous=None) -> list[dict]:
    """TFDV's skew (train vs `serving`) or drift (`current` vs `previous`) comparators."""
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(
        current, schema, previous_statistics=previous, serving_statistics=serving
    )
    findings = []
    for info in anomalies.drift_skew_info:
        feature = "/".join(info.path.step)
        measured = [("skew", m) for m in info.skew_measurements]
        measured += [("drift", m) for m in info.drift_measurements]
        for kind, m in measured:
            if m.value > m.threshold:
                against = "the train split" if kind == "skew" else "the pushed model's data"
                findings.append(
                    {
                        "split": split,
                        "feature": feature,
                        "problem": f"{kind} above threshold",
                        "detail": f"L-infinity distance of value shares from {against} is "
                        f"{m.value:.3f}, expected at most {m.threshold:g}",
                    }
                )
    return findings


def image_drift(current, baseline) -> list[dict]:
    """Image format shares and mean stored size against the pushed model's data."""
    findings = []
    now, then = image_formats(current), image_formats(baseline)
    if now and then:
        distance = max(abs(now.get(k, 0.0) - then.get(k, 0.0)) for k in set(now) | set(then))
        if distance > IMAGE_FORMAT_DRIFT_LINF:
            findings.append(
                {
                    "split": TRAIN,
                    "feature": constants.IMAGE_KEY,
                    "problem": "image format drift above threshold",
                    "detail": f"format shares {_shares(now)} against {_shares(then)}: "
                    f"L-infinity {distance:.3f}, expected at most "
                    f"{IMAGE_FORMAT_DRIFT_LINF:g}",
                }
            )
    size_now, size_then = mean_cover_bytes(current), mean_cover_bytes(baseline)
    if size_now and size_then:
        change = abs(size_now - size_then) / size_then
        if change > COVER_BYTES_DRIFT:
            findings.append(
                {
                    "split": TRAIN,
                    "feature": constants.IMAGE_KEY,
                    "problem": "cover size drift above threshold",
                    "detail": f"mean cover {size_now:,.0f} bytes against {size_then:,.0f}: "
                    f"{change:.0%} change, expected at most {COVER_BYTES_DRIFT:.0%}",
                }
            )
    return findings


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items()))


def pushed_baseline(serving_model_dir: str) -> str | None:
    """The train statistics pushed beside the newest pushed model, if any."""
    if not serving_model_dir or not fileio.exists(serving_model_dir):
        return None
    versions = sorted(
        (v.rstrip("/") for v in fileio.listdir(serving_model_dir) if v.rstrip("/").isdigit()),
        key=int,
        reverse=True,
    )
    for version in versions:
        path = os.path.join(serving_model_dir, version, constants.BASELINE_STATISTICS)
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
):
    """Every finding for this run's data, and the baseline statistics it was compared with."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.load_schema_text(os.path.join(schema_uri, "schema.pbtxt"))
    by_split = load_split_statistics(statistics_uri)
    findings = schema_anomalies(anomalies_uri)
    findings += custom_findings(by_split, schema, validations)
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


# --- The component --------------------------------------------------------------


class DataGateSpec(ComponentSpec):
    PARAMETERS = {
        "allow_anomalies": ExecutionParameter(type=int),
        "serving_model_dir": ExecutionParameter(type=str),
        "custom_validations": ExecutionParameter(type=str),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        # The latest push: read for nothing, there so that a new push changes the cache
        # key and the drift check runs against the newly pushed model's data.
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel, optional=True),
    }
    OUTPUTS = {"verdict": ChannelParameter(type=DataVerdict)}


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


class DataGate(base_component.BaseComponent):
    """Stops the pipeline on anomalies, skew or drift; Transform waits for it."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        statistics: channel.BaseChannel,
        schema: channel.BaseChannel,
        anomalies: channel.BaseChannel,
        serving_model_dir: str,
        allow_anomalies: bool = False,
        custom_validations: str = "",
        pushed_model: channel.BaseChannel | None = None,
    ):
        super().__init__(
            spec=DataGateSpec(
                statistics=statistics,
                schema=schema,
                anomalies=anomalies,
                pushed_model=pushed_model,
                serving_model_dir=serving_model_dir,
                allow_anomalies=int(allow_anomalies),
                custom_validations=custom_validations,
                verdict=channel.Channel(type=DataVerdict),
            )
        )
