"""Training history: history.json and the accuracy/loss curves plot, beside the model run."""

from __future__ import annotations

import json
import os

from tfx.dsl.io import fileio

from bookcover import plotting

HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
# An ensemble's later members keep their history in these directories of the model
# run's (member_2, member_3, ...); the first member's is the run's own.
MEMBER_DIR_PREFIX = "member_"


def member_dir(model_run_dir: str, member: int) -> str:
    """Where member `member` (0 for the first) of an ensemble keeps its history."""
    if not member:
        return model_run_dir
    return os.path.join(model_run_dir, f"{MEMBER_DIR_PREFIX}{member + 1}")


def later_member_dirs(model_run_dir: str) -> list[str]:
    """The directories of an ensemble's later members, in the members' order; none for
    a single network."""
    found = fileio.glob(os.path.join(model_run_dir, f"{MEMBER_DIR_PREFIX}*"))
    numbered = [(d, d.rstrip("/").rsplit(MEMBER_DIR_PREFIX, 1)[-1]) for d in found]
    return [d for d, n in sorted(numbered, key=lambda pair: int(pair[1])) if n.isdigit()]


def save_history(history: dict, out_dir: str) -> None:
    clean = {k: [float(v) for v in values] for k, values in history.items()}
    # Through TFX's file I/O: on a cluster out_dir is a gs:// or s3:// URI.
    with fileio.open(os.path.join(out_dir, HISTORY_FILE), "w") as f:
        f.write(json.dumps(clean, indent=2))
    plot_history(clean, os.path.join(out_dir, CURVES_FILE))


def plot_history(history: dict, path: str) -> None:
    """Accuracy and loss per epoch, train and eval, side by side."""
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, metric, title in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        for prefix, label in (("", "train"), ("val_", "eval")):
            values = history.get(prefix + metric)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(f"{title} per epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plotting.save_png(fig, path)
