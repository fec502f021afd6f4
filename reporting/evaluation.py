"""What the Evaluator found: test metrics, the confusion matrix, per-class results, and why
a model was not blessed."""

from __future__ import annotations

import numpy as np


def candidate_result(evaluation_uri: str):
    """The evaluated model's TFMA result. With a baseline (a model blessed before), TFMA
    keeps one result per model, and the one read without a name has no plots."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri, model_name=tfma.CANDIDATE_KEY)
    return result if result.model_location else tfma.load_eval_result(evaluation_uri)


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The unsliced scalar metrics of the evaluation (accuracy, top-3 accuracy, count)."""
    result = candidate_result(evaluation_uri)
    metrics = {}
    for slice_key, by_output in result.slicing_metrics:
        if slice_key == ():
            for name, value in by_output[""][""].items():
                if "doubleValue" in value:
                    metrics[name] = value["doubleValue"]
    return metrics


def confusion_matrix(evaluation_uri: str, num_classes: int) -> np.ndarray:
    """Counts [actual, predicted] of the top-1 class on the unsliced test set, from TFMA's
    MultiClassConfusionMatrixPlot (threshold 0: every example counts for its arg-max)."""
    result = candidate_result(evaluation_uri)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for slice_key, by_output in result.plots:
        if slice_key != ():
            continue
        plot = by_output[""][""].get("multiClassConfusionMatrixAtThresholds")
        if not plot:
            continue
        (at_zero,) = [m for m in plot["matrices"] if float(m.get("threshold", 0.0)) == 0.0]
        for entry in at_zero.get("entries", []):
            actual = int(entry.get("actualClassId", 0))
            predicted = int(entry.get("predictedClassId", 0))
            if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                matrix[actual, predicted] += round(float(entry.get("numWeightedExamples", 0)))
        return matrix
    raise ValueError(f"{evaluation_uri}: no MultiClassConfusionMatrixPlot for the whole test set")


def per_class(matrix: np.ndarray, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class (scikit-learn's definitions)."""
    rows = []
    for i, name in enumerate(class_names):
        true_positives = int(matrix[i, i])
        predicted, support = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        precision = true_positives / predicted if predicted else 0.0
        recall = true_positives / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "category": name,
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "f1": round(f1, 4),
                "support": support,
            }
        )
    return rows


def blocked_reasons(evaluation_uri: str) -> list[str]:
    """Why the Evaluator did not bless the model, one sentence per failed check; empty
    when it passed."""
    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(evaluation_uri)
    if validation.validation_ok:
        return []
    reasons = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            name = failure.metric_key.name
            if failure.metric_key.is_diff:
                name += " change against the baseline model"
            value = failure.metric_value
            shown = f"{value.double_value.value:.4f}" if value.HasField("double_value") else "?"
            threshold = _threshold_text(failure.metric_threshold)
            reasons.append(f"{name} = {shown} fails its threshold {threshold}")
    if validation.missing_thresholds:
        reasons.append("a thresholded metric has no value")
    return reasons or [f"validation failed: {validation}"]


def _threshold_text(threshold) -> str:
    """'>= 0.3' and the like, from a tfma MetricThreshold proto."""
    parts = []
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound"):
        parts.append(f">= {bounds.lower_bound.value:g}")
    if bounds.HasField("upper_bound"):
        parts.append(f"<= {bounds.upper_bound.value:g}")
    change = threshold.change_threshold
    if change.HasField("absolute"):
        parts.append(f"change >= {change.absolute.value:g}")
    if change.HasField("relative"):
        parts.append(f"relative change >= {change.relative.value:g}")
    return " and ".join(parts) or "(unknown threshold)"
