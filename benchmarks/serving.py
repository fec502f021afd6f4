"""Serving benchmark: the SavedModel's signature on JPEG bytes beside Keras predict on arrays.

ours = images/s through `serving_default` (decode + resize + Transform + CNN)
in batches of 64; baseline = images/s of the same model's plain Keras
`predict` on already preprocessed float arrays, the seed's way. Single-image
latency (p50, p99) of both is reported too.
"""

from __future__ import annotations

import io
import random
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks.common import write_result
from models import export, hyperparameters, model
from pipeline import embedded_data
from tests import tiny_model

COMMAND = "python -m benchmarks.serving"
BATCH = 64
SINGLE_CALLS = 200
BATCH_CALLS = 20


def jpeg_covers(n: int) -> list[bytes]:
    rng = random.Random(0)
    covers = []
    for i in range(n):
        out = io.BytesIO()
        embedded_data.draw_cover(i % 12, rng).save(out, "JPEG", quality=90)
        covers.append(out.getvalue())
    return covers


def latencies_ms(fn, calls: int) -> np.ndarray:
    fn()  # warm-up: tracing and first allocations are not serving
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return np.array(times)


def main() -> dict:
    covers = jpeg_covers(BATCH)
    with tempfile.TemporaryDirectory(prefix="bookcover-serving-") as tmp:
        _, output = tiny_model.build_transform_graph(tmp)
        cnn = model.build_model(
            model.default_hyperparameters((1e-3,), (32,), hyperparameters.SEED_MODEL_OPTIONS),
            num_classes=3,
        )
        export_dir = f"{tmp}/serving_model/1"
        export.export_model(cnn, output, export_dir)
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        arrays = output.transform_features_layer()({"image": tf.constant([[c] for c in covers])})[
            "image"
        ].numpy()

        one_jpeg, batch_jpeg = tf.constant(covers[:1]), tf.constant(covers)
        ours_single = latencies_ms(lambda: serve(images=one_jpeg), SINGLE_CALLS)
        ours_batch = latencies_ms(lambda: serve(images=batch_jpeg), BATCH_CALLS)
        base_single = latencies_ms(lambda: cnn.predict(arrays[:1], verbose=0), SINGLE_CALLS)
        base_batch = latencies_ms(
            lambda: cnn.predict(arrays, batch_size=BATCH, verbose=0), BATCH_CALLS
        )
    ours_rate = BATCH / (np.median(ours_batch) / 1000)
    base_rate = BATCH / (np.median(base_batch) / 1000)
    figures = {
        "ours_single_p50_ms": round(float(np.percentile(ours_single, 50)), 2),
        "ours_single_p99_ms": round(float(np.percentile(ours_single, 99)), 2),
        "baseline_single_p50_ms": round(float(np.percentile(base_single, 50)), 2),
        "baseline_single_p99_ms": round(float(np.percentile(base_single, 99)), 2),
        "ours_batch64_images_per_s": round(ours_rate, 1),
        "baseline_batch64_images_per_s": round(base_rate, 1),
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    return write_result(
        "serving",
        ours=round(ours_rate, 1),
        baseline=round(base_rate, 1),
        ratio=round(ours_rate / base_rate, 3),
        unit="images/s (batch of 64, CPU)",
        command=COMMAND,
        **figures,
        setup="seed CNN (F=32) on CPU; ours: serving_default on 120x180 JPEG bytes "
        "(decode, resize, Transform, model); baseline: keras Model.predict on the "
        "same covers already decoded and normalised",
    )


if __name__ == "__main__":
    main()
