"""Per-class results from a confusion matrix, and the report's pictures of them."""

import numpy as np
import pytest
from PIL import Image

from reporting import evaluation, plots


def test_per_class_precision_recall_f1_and_support():
    matrix = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])  # rows: true, columns: predicted
    rows = evaluation.per_class(matrix, ["Art", "History", "Poetry"])
    art, history, poetry = rows
    assert (art["precision"], art["recall"], art["support"]) == (1.0, 0.75, 4)
    assert history["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert history["recall"] == 0.5 and history["support"] == 4
    assert history["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), abs=1e-4)
    # Never predicted and never true: zeros, not a division error.
    assert poetry == {
        "category": "Poetry",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_confusion_matrix_plot_names_every_category(tmp_path):
    names = [f"Category number {i}" for i in range(12)]
    matrix = np.random.default_rng(0).integers(0, 9, size=(12, 12))
    matrix[3] = 0  # a category absent from the test set must not divide by zero
    path = tmp_path / "cm.png"
    plots.plot_confusion_matrix(matrix, names, str(path))
    width, height = Image.open(path).size
    assert width >= 800 and height >= 700  # room for 12 names on both axes


def test_trials_plot_takes_the_tuner_table(tmp_path):
    trials = [
        {"learning_rate": 1e-3, "first_filters": 8, "curves": {"val_accuracy": [0.2, 0.3]}},
        {"learning_rate": 5e-4, "first_filters": 16, "curves": {"val_accuracy": [0.1]}},
        {"learning_rate": 1e-4, "first_filters": 8, "curves": {}},  # a failed trial: no curve
    ]
    labels = plots.plot_trials(trials, str(tmp_path / "trials.png"))
    assert labels == ["lr 0.001, F 8", "lr 0.0005, F 16"]
    assert Image.open(tmp_path / "trials.png").format == "PNG"
