"""Step-time benchmark: the default network's training step on CPU, with and without
oneDNN and XLA.

Each case runs in its own process (TF_ENABLE_ONEDNN_OPTS is read when TensorFlow
loads): models.model.build_model with the default options at F=FILTERS, then
`train_on_batch` on one fixed batch of BATCH random covers, WARMUP steps untimed
(tracing), STEPS timed. No input pipeline: only the step's own arithmetic.

ours = ms per step as the Trainer runs it (oneDNN on, the default; no XLA);
baseline = ms per step with oneDNN off; ratio = baseline / ours (> 1: oneDNN is
faster). XLA (`jit_compile=True`) is timed without augmentation against the same
network without it, because XLA cannot compile the augmentation's affine
transform on CPU (the case that tries it records the error).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from benchmarks.common import command_line, write_result

COMMAND = "python -m benchmarks.step_time"
FILTERS = 16  # the wider of the default grid's two widths (chosen at ecf063b; F=12 at 3f42a3c)
BATCH = 64
WARMUP = 3
STEPS = 20
ROUNDS = 2  # every case once per round, rounds one after the other: the host's drift shows
# name: (oneDNN, jit_compile, augmentation)
CASES = {
    "default": (True, False, True),
    "onednn_off": (False, False, True),
    "no_augmentation": (True, False, False),
    "xla_no_augmentation": (True, True, False),
    "xla": (True, True, True),
}


def time_steps(jit_compile: bool, augment: bool, filters: int) -> float:
    """Milliseconds per training step of the default network on one fixed batch."""
    import keras
    import numpy as np

    from bookcover import constants
    from models import model

    hp = model.default_hyperparameters(
        learning_rates=(2e-3,), first_filters=(filters,), options={"augment": augment}
    )
    network = model.build_model(hp, 12, steps_per_epoch=52, epochs=90)
    network.compile(optimizer=network.optimizer, loss=network.loss, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    shape = (BATCH, constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH, constants.IMAGE_CHANNELS)
    covers = rng.normal(size=shape).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 12, BATCH), 12)
    for _ in range(WARMUP):
        network.train_on_batch(covers, labels)
    started = time.perf_counter()
    for _ in range(STEPS):
        network.train_on_batch(covers, labels)
    return (time.perf_counter() - started) / STEPS * 1000


def run_case(name: str, filters: int) -> dict:
    """One case in a fresh process: its ms per step, or the error that stopped it."""
    onednn, jit_compile, augment = CASES[name]
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    worker = [sys.executable, "-m", "benchmarks.step_time", "--case", name]
    done = subprocess.run(
        [*worker, "--filters", str(filters)], env=env, capture_output=True, text=True
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return {"ms_per_step": round(json.loads(lines[-1])["ms_per_step"], 1)}
    unsupported = re.search(r"compile graph \S+ on (XLA_\w+): (\w+)", done.stderr)
    if unsupported:  # XLA's own error names only the function; this line names the op
        return {"error": "{1} cannot be compiled for {0}".format(*unsupported.groups())}
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "failed" in line]
    return {"error": (errors or ["exit status " + str(done.returncode)])[-1].strip()[:300]}


def mean_case(runs: list[dict]) -> dict:
    """A case's mean over its rounds, with each round's figure; the error if any failed."""
    failed = [run["error"] for run in runs if "error" in run]
    if failed:
        return {"error": failed[0]}
    times = [run["ms_per_step"] for run in runs]
    return {"ms_per_step": round(sum(times) / len(times), 1), "rounds": times}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="(internal) time one case here")
    parser.add_argument("--filters", type=int, default=FILTERS)
    args = parser.parse_args(argv)
    if args.case:
        _, jit_compile, augment = CASES[args.case]
        print(json.dumps({"ms_per_step": time_steps(jit_compile, augment, args.filters)}))
        return None
    runs = {name: [] for name in CASES}
    for _ in range(ROUNDS):
        for name in CASES:
            runs[name].append(run_case(name, args.filters))
            print(f"{name}: {json.dumps(runs[name][-1])}", flush=True)
    cases = {name: mean_case(found) for name, found in runs.items()}
    ours = cases["default"]["ms_per_step"]
    baseline = cases["onednn_off"]["ms_per_step"]
    xla = cases["xla_no_augmentation"].get("ms_per_step")
    return write_result(
        "step_time",
        ours=ours,
        baseline=baseline,
        ratio=round(baseline / ours, 3),
        unit="ms per training step (CPU)",
        command=command_line(COMMAND, argv),
        ratio_definition="oneDNN off / oneDNN on (the default), same step",
        xla_ratio=xla and round(cases["no_augmentation"]["ms_per_step"] / xla, 3),
        xla_ratio_definition="no XLA / XLA, both without augmentation (> 1: XLA faster)",
        cases=cases,
        setup=f"models.model.build_model, default options, F={args.filters}, 12 classes, "
        f"train_on_batch on one fixed batch of {BATCH} random 100x150x3 covers, "
        f"{WARMUP} steps untimed, {STEPS} timed, each case in its own process, "
        f"{ROUNDS} rounds of every case (the mean reported)",
    )


if __name__ == "__main__":
    main()
