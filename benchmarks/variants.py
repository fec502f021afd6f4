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
import time

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

    from models import model as cover_model

    class Batches(keras.utils.PyDataset):
        """Shuffled batches with class weights as sample weights, optionally mixed."""

        def __init__(self, x, y, classes, batch, weights, mixup=0.0, cutmix=0.0, seed=0, **kw):
            super().__init__(**kw)
            self.x, self.y, self.k, self.batch = x, y, classes, batch
            self.weights, self.mixup, self.cutmix = weights, mixup, cutmix
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return -(-len(self.x) // self.batch)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.x))

        def __getitem__(self, i):
            idx = self.order[i * self.batch : (i + 1) * self.batch]
            x = self.x[idx].copy()
            y = np.eye(self.k, dtype=np.float32)[self.y[idx]]
            w = self.weights[self.y[idx]].astype(np.float32)
            if self.mixup or self.cutmix:
                perm = self.rng.permutation(len(idx))
                if self.cutmix and (not self.mixup or self.rng.random() < 0.5):
                    lam = self.rng.beta(self.cutmix, self.cutmix)
                    h, wd = x.shape[1], x.shape[2]
                    ch, cw = int(h * np.sqrt(1 - lam)), int(wd * np.sqrt(1 - lam))
                    cy, cx = self.rng.integers(h), self.rng.integers(wd)
                    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
                    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, wd)
                    x[:, y0:y1, x0:x1] = x[perm, y0:y1, x0:x1]
                    lam = 1 - (y1 - y0) * (x1 - x0) / (h * wd)
                else:
                    lam = self.rng.beta(self.mixup, self.mixup)
                    x = lam * x + (1 - lam) * x[perm]
                y = lam * y + (1 - lam) * y[perm]
                w = lam * w + (1 - lam) * w[perm]
            return x, y, w

    class EmaEval(keras.callbacks.Callback):
        """Validation accuracy of the optimiser's moving average of the weights (use_ema)."""

        def __init__(self, val):
            super().__init__()
            self.val, self.best, self.history = val, 0.0, []

        def on_epoch_end(self, epoch, logs=None):
            variables = self.model.trainable_variables
            current = [np.array(v.numpy()) for v in variables]
            for v, a in zip(
                variables, self.model.optimizer._model_variables_moving_average, strict=True
            ):
                v.assign(a.numpy())
            x, y = self.val
            accuracy = float(
                (self.model.predict(x, batch_size=256, verbose=0).argmax(-1) == y).mean()
            )
            self.history.append(accuracy)
            self.best = max(self.best, accuracy)
            for v, a in zip(variables, current, strict=True):
                v.assign(a)

    def run(name, data, classes, epochs=90, lr=2e-3, filters=12, batch=64, mixup=0.0,
            cutmix=0.0, ema=0.0, patience=15, seed=0, **options):  # fmt: skip
        keras.utils.set_random_seed(seed)
        hp = cover_model.default_hyperparameters(options=options)
        hp.values["learning_rate"], hp.values["first_filters"] = lr, filters
        (xt, yt), (xv, yv) = data["train"], data["eval"]
        counts = np.bincount(yt, minlength=classes)
        weights = counts.sum() / (classes * np.maximum(counts, 1))
        if not hp.get("class_weights"):
            weights = np.ones(classes)
        train = Batches(xt, yt, classes, batch, weights, mixup, cutmix, seed, workers=4)
        net = cover_model.build_model(hp, classes, len(train), epochs)
        callbacks = [keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=patience)]
        ema_eval = None
        if ema:
            net.compile(
                optimizer=keras.optimizers.Adam(
                    net.optimizer._learning_rate, use_ema=True, ema_momentum=ema
                ),
                loss=net.loss,
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
            ema_eval = EmaEval((xv, yv))
            callbacks.insert(0, ema_eval)
        started = time.time()
        validation = (xv, np.eye(classes, dtype=np.float32)[yv])
        history = net.fit(
            train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=0
        ).history
        val = history["val_accuracy"]
        result = {
            "name": name,
            "seed": seed,
            "epochs_run": len(val),
            "best_val": max(val),
            "best_epoch": int(np.argmax(val)) + 1,
            "last_val": val[-1],
            "last_train": history["accuracy"][-1],
            "seconds": round(time.time() - started, 1),
            "val_curve": [round(v, 4) for v in val],
        }
        if ema_eval:
            result["ema_best_val"] = ema_eval.best
            result["ema_curve"] = [round(v, 4) for v in ema_eval.history]
        return result

    names, seeds, path, out_dir = argv[1].split(","), argv[2].split(","), argv[3], argv[4]
    data, classes = load(path, int(os.environ.get("LIMIT", "0")) or None)
    print("loaded", {s: v[0].shape for s, v in data.items()}, keras.backend.backend(), flush=True)
    for seed in map(int, seeds):
        for name in names:
            settings = dict(VARIANTS[name])
            if os.environ.get("EPOCHS"):
                settings["epochs"] = int(os.environ["EPOCHS"])
            result = run(name, data, classes, seed=seed, **settings)
            print(json.dumps({k: v for k, v in result.items() if not k.endswith("curve")}))
            with open(os.path.join(out_dir, f"{name}_s{seed}.json"), "w") as f:
                json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
