"""DataGate's checks: pure functions from statistics, schema and anomalies to findings.

A finding is a dict: the split, the feature, the problem and a detail that
says what was expected and what was found. The thresholds of the checks that
are not the schema's own comparators are here.
"""

from __future__ import annotations

from tfx.dsl.io import fileio

from bookcover import constants, split_statistics

# Image format shares may differ this much (L-infinity) from the pushed model's data,
# and the mean stored cover size this much (relative). Category shares are compared
# by the schema's own drift comparator.
IMAGE_FORMAT_DRIFT_LINF = 0.1
COVER_BYTES_DRIFT = 0.5
# For a model that reads titles (inputs=cover_title): the most of a split's titles that
# may be empty. Without its titles that model is its cover branch, a quieter model than
# the one the run is asked for, so an emptied column stops the run rather than lowering
# its accuracy unseen.
EMPTY_TITLES_MAX_SHARE = 0.5
IMAGE_FORMAT_HISTOGRAM = "image_format_histogram"  # TFDV's image semantic domain statistic
TRAIN = "train"


def finding_line(finding: dict) -> str:
    """One line per finding: where, what was expected, what was found."""
    return f"{finding['split']}: {finding['feature']}: {finding['problem']}: {finding['detail']}"


# --- Reading statistics ------------------------------------------------------


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


def empty_share(statistics, name: str) -> float:
    """The share of a string feature's examples whose value is empty or absent (1.0 when
    the statistics lack the feature), from TFDV's top values."""
    feature = feature_stats(statistics, name)
    examples = statistics.datasets[0].num_examples
    if feature is None or not examples:
        return 1.0
    empty = sum(v.frequency for v in feature.string_stats.top_values if v.value == "")
    return (empty + feature.string_stats.common_stats.num_missing) / examples


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
    paths = split_statistics.split_files(anomalies_uri, split_statistics.ANOMALIES_FILE)
    for split, path in paths.items():
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


def empty_titles(by_split: dict) -> list[dict]:
    """Splits where over EMPTY_TITLES_MAX_SHARE of the titles are empty: checked only for a
    model that reads them."""
    findings = []
    for split, statistics in sorted(by_split.items()):
        share = empty_share(statistics, constants.TITLE_KEY)
        if share > EMPTY_TITLES_MAX_SHARE:
            findings.append(
                {
                    "split": split,
                    "feature": constants.TITLE_KEY,
                    "problem": "titles missing",
                    "detail": f"{share:.0%} of the titles are empty, expected at most "
                    f"{EMPTY_TITLES_MAX_SHARE:.0%}: the model reads titles (inputs=cover_title)",
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
