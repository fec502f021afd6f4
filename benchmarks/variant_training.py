"""The training half of benchmarks.variants: the model on packed covers, in Keras 3, any backend."""

from __future__ import annotations

import time

import keras
import numpy as np

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
        accuracy = float((self.model.predict(x, batch_size=256, verbose=0).argmax(-1) == y).mean())
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
