"""Epoch-boundary benchmark: how much of the Trainer's time its epochs spend idle.

Runs the real Trainer (`models.trainer.run_fn`: its strategy, input pipeline,
model and callbacks) for EPOCHS epochs on generated covers, once on the one
device a process sees and once under MirroredStrategy over two logical CPU
devices, each in its own process. The epoch wall times come from the run's
history.json (`epoch_seconds`).

ours = total epoch time; baseline = epochs x first-quartile epoch time, the
time the same epochs would take if none of them stalled; ratio = baseline /
ours (1.0: no epoch idles; the goal is >= 0.85 with no epoch over 1.5x the
first quartile). The first epoch (tracing) is left out of all three.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from benchmarks.common import epoch_stalls, write_result
from benchmarks.training import cover_rows
from models import hyperparameters
from tests import run_fn_job, tiny_model

COMMAND = "python -m benchmarks.epochs"
EPOCHS = 30
TRAIN_COVERS = 768
EVAL_COVERS = 192
DEVICE_COUNTS = (1, 2)


def write_data(root: str) -> dict:
    """A Transform graph and gzipped TFRecord shards of drawn covers, as the Trainer reads them."""
    tiny_model.build_transform_graph(root)
    rows = cover_rows(TRAIN_COVERS + EVAL_COVERS)
    train = [
        tiny_model.write_tfrecords(os.path.join(root, f"train-{s}.gz"), rows[s:TRAIN_COVERS:4])
        for s in range(4)
    ]
    evaluation = tiny_model.write_tfrecords(os.path.join(root, "eval.gz"), rows[TRAIN_COVERS:])
    return {"train_files": train, "eval_files": [evaluation]}


def train(root: str, data: dict, devices: int) -> list[float]:
    """The epoch seconds of one run_fn in a fresh process with `devices` logical devices."""
    out_dir = os.path.join(root, f"devices-{devices}")
    job = run_fn_job.describe(
        data["train_files"],
        data["eval_files"],
        os.path.join(root, "graph"),
        out_dir,
        train_epochs=EPOCHS,
        learning_rates=[hyperparameters.LEARNING_RATES[0]],
        first_filters=[hyperparameters.FIRST_FILTERS[0]],
        batch_size=hyperparameters.BATCH_SIZE // devices,
    )
    job_path = os.path.join(root, f"job-{devices}.json")
    subprocess.run(run_fn_job.command(job, job_path, logical_cpus=devices), check=True)
    with open(os.path.join(out_dir, "run", "history.json")) as f:
        return json.load(f)["epoch_seconds"]


def main() -> dict:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bookcover-epochs-") as root:
        data = write_data(root)
        for devices in DEVICE_COUNTS:
            seconds = train(root, data, devices)
            runs[f"{devices}_device"] = {"epoch_seconds": seconds, **epoch_stalls(seconds)}
            print(f"{devices} device(s): {json.dumps(runs[f'{devices}_device'])}")
    worst = min(runs.values(), key=lambda r: r["ratio"])
    return write_result(
        "epochs",
        ours=worst["total_s"],
        baseline=worst["baseline_s"],
        ratio=worst["ratio"],
        unit="seconds of epoch wall time (first epoch left out)",
        command=COMMAND,
        ratio_definition="epochs x first-quartile epoch time / total epoch time, the worse "
        "of the runs (1.0: no epoch idles; goal >= 0.85, no epoch over 1.5x the first quartile)",
        runs=runs,
        setup="models.trainer.run_fn, default model options, "
        f"F={hyperparameters.FIRST_FILTERS[0]}, "
        f"{EPOCHS} epochs, global batch {hyperparameters.BATCH_SIZE}, {TRAIN_COVERS} train and "
        f"{EVAL_COVERS} eval drawn covers (3 classes) in gzipped TFRecords; once with one "
        "device, once under MirroredStrategy over two logical CPU devices",
    )


if __name__ == "__main__":
    main()
