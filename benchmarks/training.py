"""Training benchmark: the Trainer's input pipeline + training step beside plain in-memory fit.

ours = images/s of model.fit on models.inputs.input_fn (gzipped TFRecords of
JPEG covers, decoded and normalised by the Transform graph on the fly);
baseline = images/s of model.fit on the same covers held in memory as NumPy
arrays (the seed's way). Same seed CNN (F=32), batch 128, CPU. Epoch times
after a warm-up epoch.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
import time

import keras
import numpy as np

from benchmarks.common import write_result
from bookcover import constants
from models import hyperparameters, inputs, model
from pipeline import embedded_data
from tests import tiny_model

COMMAND = "python -m benchmarks.training"
COVERS = 1536
EPOCHS = 3  # the first is warm-up (tracing, autotuning)


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def cover_rows(n: int) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        k = i % 3
        out = io.BytesIO()
        image = embedded_data.draw_cover(k, rng).resize((100, 150))
        image.save(out, "JPEG", quality=90)
        rows.append(
            {
                constants.IMAGE_KEY: [out.getvalue()],
                constants.CATEGORY_KEY: [tiny_model.CATEGORIES[k].encode()],
            }
        )
    return rows


def images_per_second(fit) -> float:
    timer = EpochTimer()
    fit(timer)
    return COVERS / float(np.median(timer.times[1:]))


def main() -> dict:
    keras.utils.set_random_seed(0)
    rows = cover_rows(COVERS)
    with tempfile.TemporaryDirectory(prefix="bookcover-train-") as tmp:
        _, output = tiny_model.build_transform_graph(tmp)
        files = []
        for shard in range(4):  # the ExampleGen writes several shards
            path = os.path.join(tmp, f"train-{shard}.gz")
            files.append(tiny_model.write_tfrecords(path, rows[shard::4]))
        hp = model.default_hyperparameters((1e-3,), (32,), hyperparameters.SEED_MODEL_OPTIONS)

        dataset = inputs.input_fn(files, output, hyperparameters.SEED_BATCH_SIZE, shuffle=True)
        ours_model = model.build_model(hp, num_classes=3)
        ours = images_per_second(
            lambda t: ours_model.fit(dataset, epochs=EPOCHS, callbacks=[t], verbose=0)
        )

        decoded = list(
            inputs.input_fn(files, output, hyperparameters.SEED_BATCH_SIZE, shuffle=False)
        )
        arrays = np.concatenate([x.numpy() for x, _ in decoded])
        labels = np.concatenate([y.numpy() for _, y in decoded])
        base_model = model.build_model(hp, num_classes=3)
        baseline = images_per_second(
            lambda t: base_model.fit(
                arrays,
                labels,
                batch_size=hyperparameters.SEED_BATCH_SIZE,
                epochs=EPOCHS,
                shuffle=True,
                callbacks=[t],
                verbose=0,
            )
        )
    print(f"input pipeline + training: {ours:.1f} images/s; in-memory fit: {baseline:.1f}")
    return write_result(
        "training",
        ours=round(ours, 1),
        baseline=round(baseline, 1),
        ratio=round(ours / baseline, 3),
        unit="images/s (training, CPU)",
        command=COMMAND,
        covers=COVERS,
        batch_size=hyperparameters.SEED_BATCH_SIZE,
        in_memory_bytes=int(arrays.nbytes),
        setup="seed CNN F=32; ours: 4 gzipped TFRecord shards of 100x150 JPEGs through "
        "input_fn (interleave, shuffle, batch, Transform graph, prefetch); baseline: "
        "the same covers preprocessed once into float32 NumPy arrays",
    )


if __name__ == "__main__":
    main()
