"""Model variants on a pipeline run's own train/eval covers, several seeds, validation only.

Sorts out candidate changes before a `benchmarks.quality` run, on exactly the
covers and split the pipeline trained on (the probe, benchmarks/probe.py,
makes its own split). The test split is never read. Built for a GPU machine
without TensorFlow: `pack` (here, with TensorFlow) writes a quality run's
train and eval covers to one file; `run` (anywhere with Keras 3, any backend)
trains the project's model code (models/model.py) on them. Mixup here is
drawn in NumPy, once per batch, as models/inputs.py mix_batches does in tf.data.

    python -m benchmarks.variants pack /tmp/quality/run .gpu/covers.pkl
    KERAS_BACKEND=jax python -m benchmarks.variants run base,mixup 0,1 .gpu/covers.pkl out/

benchmarks/variants.sh runs a list of variants six processes at a time on
the device machine; benchmarks/README.md has the results.
"""

from __future__ import annotations

import glob
import io
import json
import os
import pickle
import sys

import numpy as np

# Each variant: model options, or the run's own settings (epochs, lr, filters,
# batch, mixup, ema, patience), over the default at F=12, 2e-3, 90 epochs.
NO_STOP = {"patience": 1000}
VARIANTS = {
    "base": {},
    "f16": {"filters": 16},
    "mixup02": {"mixup": 0.2},
    "cutmix1": {"cutmix": 1.0},
    "ema": {"ema": 0.995},
    "e150": {"epochs": 150},
    "aug_strong": {"augment_shift": 0.1, "augment_zoom": 0.15},
    "drop05": {"dropout": 0.5},
    "ls02": {"label_smoothing": 0.2},
    "b32": {"batch": 32},
    "lr1e3": {"lr": 1e-3},
    "l2_2e4": {"l2": 2e-4},
    "base_ns": NO_STOP,
    "mixup_ns": {"mixup": 0.2, **NO_STOP},
    "ls02_ns": {"label_smoothing": 0.2, **NO_STOP},
    "l2_ns": {"l2": 2e-4, **NO_STOP},
    "combo_ns": {"mixup": 0.2, "label_smoothing": 0.2, "l2": 2e-4, **NO_STOP},
    "ema_ns": {"ema": 0.995, **NO_STOP},
}


def pack(run_dir: str, path: str) -> None:
    """A quality run's train and eval covers (JPEG bytes, category) into one pickle."""
    import tensorflow as tf

    examples = sorted(glob.glob(os.path.join(run_dir, "pipeline/CoverExampleGen/examples/*")))[-1]
    data = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(examples, f"Split-{split}", "*.gz"))
        covers, categories = [], []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            features = tf.train.Example.FromString(record.numpy()).features.feature
            covers.append(features["image"].bytes_list.value[0])
            categories.append(features["category"].bytes_list.value[0].decode())
        data[split] = (covers, categories)
    with open(path, "wb") as f:
        pickle.dump(data, f)


def load(path: str, limit: int | None = None):
    """Covers decoded to [0, 1], standardised per channel over the training covers."""
    from PIL import Image

    with open(path, "rb") as f:
        data = pickle.load(f)
    vocabulary = sorted(set(data["train"][1]))
    out = {}
    for split, (covers, categories) in data.items():
        covers, categories = covers[:limit], categories[:limit]
        x = np.stack(
            [
                np.asarray(
                    Image.open(io.BytesIO(c)).convert("RGB").resize((100, 150), Image.BILINEAR),
                    dtype=np.float32,
                )
                / 255.0
                for c in covers
            ]
        )
        out[split] = (x, np.array([vocabulary.index(c) for c in categories]))
    mean = out["train"][0].mean(axis=(0, 1, 2))
    std = out["train"][0].std(axis=(0, 1, 2))
    return {s: ((x - mean) / std, y) for s, (x, y) in out.items()}, len(vocabulary)


def main(argv: list[str]) -> None:
    if argv[0] == "pack":
        pack(argv[1], argv[2])
        return
    import keras

    from benchmarks import variant_training

    names, seeds, path, out_dir = argv[1].split(","), argv[2].split(","), argv[3], argv[4]
    data, classes = load(path, int(os.environ.get("LIMIT", "0")) or None)
    print("loaded", {s: v[0].shape for s, v in data.items()}, keras.backend.backend(), flush=True)
    for seed in map(int, seeds):
        for name in names:
            settings = dict(VARIANTS[name])
            if os.environ.get("EPOCHS"):
                settings["epochs"] = int(os.environ["EPOCHS"])
            result = variant_training.run(name, data, classes, seed=seed, **settings)
            print(json.dumps({k: v for k, v in result.items() if not k.endswith("curve")}))
            with open(os.path.join(out_dir, f"{name}_s{seed}.json"), "w") as f:
                json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
