"""The report's pictures: confusion matrix, per-class results and the grid search's curves."""

from __future__ import annotations

import numpy as np

from bookcover import plotting


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str) -> None:
    """Rows normalised to the share of each true category; counts written in the cells."""
    plt = plotting.pyplot()
    n = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = max(6.0, 0.55 * n + 3.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=110)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(n), class_names, fontsize=9)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("true category")
    ax.set_title(f"Confusion matrix on the test set ({int(matrix.sum())} covers), rows normalised")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true category")
    fig.tight_layout()
    plotting.save_png(fig, path)


def plot_per_class(rows: list[dict], path: str) -> None:
    """Precision and recall per category as paired horizontal bars."""
    plt = plotting.pyplot()
    names = [r["category"] for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.4 * len(rows) + 1.5)), dpi=110)
    ax.barh(y - 0.2, [r["precision"] for r in rows], height=0.4, label="precision")
    ax.barh(y + 0.2, [r["recall"] for r in rows], height=0.4, label="recall")
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share")
    ax.set_title("Precision and recall per category (test set)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    plotting.save_png(fig, path)


def plot_trials(trials: list[dict], path: str) -> list[str]:
    """Validation accuracy per epoch of every grid-search trial; returns the curves' labels."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    labels = []
    for trial in trials:
        values = trial.get("curves", {}).get("val_accuracy", [])
        if values:
            labels.append(f"lr {trial['learning_rate']:g}, F {trial['first_filters']}")
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=labels[-1])
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    ax.set_title("Grid search: validation accuracy of each trial")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    plotting.save_png(fig, path)
    return labels
