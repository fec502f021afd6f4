"""Mixed precision on a GPU: the default model's training step in float32 and mixed_float16.

    KERAS_BACKEND=jax python -m benchmarks.gpu_precision [--batch-sizes 64,256]

The project's own model (models.model.build_model: default options, F=16, 12
classes, augmentation, the cosine schedule) trains on synthetic covers, once
per dtype policy and batch size, on the Keras backend KERAS_BACKEND names.
"ours" is mixed_float16's step time at the default batch, "baseline"
float32's; the ratio is float32 / mixed_float16 (above 1: mixed precision is
faster). Each run also times a training step on a batch already on the
device (resident_step_ms: the arithmetic without fit's copies from memory), and
reports its final loss and eval accuracy, so a policy that trains faster but
learns worse shows.

The lent GPU machine has PyTorch and JAX but no TensorFlow, and a TensorFlow
wheel with CUDA is far beyond what a call to it can carry: there this runs
the same Keras model code as the Trainer on JAX, not TensorFlow's kernels nor
the Trainer's tf.data input (the covers are fed from memory). What it answers
is whether the model's arithmetic gains from float16, not the Trainer's
end-to-end epoch time (benchmarks/README.md, "Mixed precision on a GPU").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from benchmarks.common import write_result

NUM_CLASSES = 12
TRAIN_COVERS = 6144
EVAL_COVERS = 1024
EPOCHS = 4  # the first one compiles and is not timed


def synthetic_covers(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised 150x100x3 covers: noise plus a faint per-class pattern of 25-pixel
    blocks (coarse enough to survive the model's shift and zoom augmentation), learnable
    in a few epochs but not at once, so the accuracy after training tells policies apart."""
    from bookcover import constants

    block = 25
    coarse = (constants.IMAGE_HEIGHT // block, constants.IMAGE_WIDTH // block)
    patterns = np.random.default_rng(0).normal(0, 1, (NUM_CLASSES, *coarse, 3))
    patterns = patterns.repeat(block, axis=1).repeat(block, axis=2).astype(np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count)
    shape = patterns.shape[1:]
    images = rng.normal(0, 1, (count, *shape)).astype(np.float32) + 0.5 * patterns[labels]
    return images, np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def train_once(policy: str, batch_size: int, data: dict) -> dict:
    import keras

    from models import model

    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(42)
    steps = TRAIN_COVERS // batch_size
    hp = model.default_hyperparameters((1e-3,), (16,))
    cnn = model.build_model(hp, NUM_CLASSES, steps_per_epoch=steps, epochs=EPOCHS)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    history = cnn.fit(
        data["train_x"],
        data["train_y"],
        batch_size=batch_size,
        epochs=EPOCHS,
        shuffle=True,
        verbose=0,
        callbacks=[EpochTimes()],
    )
    loss, accuracy = cnn.evaluate(data["eval_x"], data["eval_y"], verbose=0)[:2]
    timed = times[1:]
    step_ms = 1000 * sum(timed) / (len(timed) * steps)
    resident_ms = resident_step_ms(cnn, data, batch_size)
    result = {
        "policy": policy,
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "epoch_s": [round(t, 3) for t in times],
        "step_ms": round(step_ms, 3),
        "covers_per_s": round(batch_size * 1000 / step_ms, 1),
        "resident_step_ms": round(resident_ms, 3),
        "final_train_loss": round(float(history.history["loss"][-1]), 4),
        "eval_loss": round(float(loss), 4),
        "eval_accuracy": round(float(accuracy), 4),
        "finite": bool(math.isfinite(loss)),
    }
    print(json.dumps(result), flush=True)
    keras.mixed_precision.set_dtype_policy("float32")
    return result


def resident_step_ms(cnn, data: dict, batch_size: int, steps: int = 60) -> float:
    """One training step on a batch already on the device: the arithmetic without fit's
    host-to-device copies (train_on_batch returns the loss, so each step ends synced)."""
    import keras

    x, y = data["train_x"][:batch_size], data["train_y"][:batch_size]
    if keras.backend.backend() == "jax":
        import jax

        x, y = jax.device_put(x), jax.device_put(y)
    elif keras.backend.backend() == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        x, y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    for _ in range(5):
        cnn.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        cnn.train_on_batch(x, y)
    return 1000 * (time.perf_counter() - start) / steps


def device_name() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}: {jax.devices()[0].device_kind}"
    if backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        return f"torch {torch.__version__}: {name}"
    import tensorflow as tf

    return f"tensorflow {tf.__version__}: {tf.config.list_physical_devices('GPU') or 'cpu'}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_precision")
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated; first: default")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    train_x, train_y = synthetic_covers(TRAIN_COVERS, seed=1)
    eval_x, eval_y = synthetic_covers(EVAL_COVERS, seed=2)
    data = {"train_x": train_x, "train_y": train_y, "eval_x": eval_x, "eval_y": eval_y}
    runs = [
        train_once(policy, batch, data)
        for batch in batch_sizes
        for policy in ("float32", "mixed_float16")
    ]
    by = {(r["policy"], r["batch_size"]): r for r in runs}
    ratios = {
        str(b): round(by["float32", b]["step_ms"] / by["mixed_float16", b]["step_ms"], 3)
        for b in batch_sizes
    }
    resident_ratios = {
        str(b): round(
            by["float32", b]["resident_step_ms"] / by["mixed_float16", b]["resident_step_ms"], 3
        )
        for b in batch_sizes
    }
    default = batch_sizes[0]
    return write_result(
        "gpu_precision",
        ours=by["mixed_float16", default]["step_ms"],
        baseline=by["float32", default]["step_ms"],
        ratio=ratios[str(default)],
        unit=f"ms per training step at batch {default} (ratio: float32 / mixed_float16)",
        command="KERAS_BACKEND=jax python -m benchmarks.gpu_precision "
        f"--batch-sizes {args.batch_sizes}",
        setup=f"models.model.build_model, default model options, F=16, {NUM_CLASSES} classes, "
        f"{TRAIN_COVERS} synthetic standardised covers from memory, {EPOCHS} epochs "
        "(the first untimed: compilation), Keras fit",
        device=device_name(),
        keras_backend=os.environ.get("KERAS_BACKEND", "tensorflow"),
        ratios_by_batch=ratios,
        resident_ratios_by_batch=resident_ratios,
        runs=runs,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
