"""Runs models.trainer.run_fn from a JSON job description in a process of its own.

`--logical-cpus N` splits the CPU into N logical devices first, so the Trainer
mirrors over them as it would over N GPUs (used by the kill-and-resume test,
the two-device test and benchmarks.epochs).
"""

import argparse
import json
import logging

import tensorflow as tf
from tfx import v1 as tfx


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
