"""Runs models.trainer.run_fn from a JSON job description in a process of its own.

`--logical-cpus N` splits the CPU into N logical devices first, so the Trainer
mirrors over them as it would over N GPUs (used by the kill-and-resume test,
the two-device test and benchmarks.epochs).
"""

import argparse
import json
import logging
import os
import sys

import tensorflow as tf
from tfx import v1 as tfx


def describe(
    train_files: list[str], eval_files: list[str], graph_dir: str, out_dir: str, **settings
) -> dict:
    """A run_fn job (FnArgs as JSON) whose serving model, run dir and backup go under out_dir;
    `settings` are TrainingSettings fields."""
    from models.settings import TrainingSettings

    settings = TrainingSettings(backup_dir=os.path.join(out_dir, "backup"), **settings)
    return {
        "train_files": train_files,
        "eval_files": eval_files,
        "transform_graph_path": graph_dir,
        "serving_model_dir": os.path.join(out_dir, "serving"),
        "model_run_dir": os.path.join(out_dir, "run"),
        "hyperparameters": None,
        "custom_config": settings.for_trainer(),
    }


def command(job: dict, path: str, logical_cpus: int = 1) -> list[str]:
    """Writes the job to `path`; the command line that runs it in a process of its own."""
    with open(path, "w") as f:
        json.dump(job, f)
    return [sys.executable, "-m", "tests.run_fn_job", path, "--logical-cpus", str(logical_cpus)]


def split_cpu(devices: int) -> None:
    """N logical CPU devices; must run before TensorFlow initialises its devices."""
    if devices > 1:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("--logical-cpus", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger().setLevel(logging.INFO)  # absl may have set up the root logger
    split_cpu(args.logical_cpus)
    from models import trainer

    with open(args.job) as f:
        job = json.load(f)
    trainer.run_fn(tfx.components.FnArgs(**job))
