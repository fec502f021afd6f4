"""Model probe: one model configuration on real covers in minutes, not the pipeline's hour.

Reads the 12 largest categories of ../shared/bookcovers straight from disk
(every cover, resized to 100x150, split 60/20/20 per category by a stable
hash of the file name), standardises them per channel as Transform does, and
trains the project's own model code (models/model.py) with the given options
on in-memory arrays. For sorting out candidate changes before a
`benchmarks.quality` run; its split is not the pipeline's, so its figures are
not comparable with quality.json's.

    python -m benchmarks.probe --options '{"head": "gap"}' --learning-rate 1e-3 --epochs 30

`--pretrain-epochs N` first trains the same network on every category (the
train split of the 12, and every cover of the others, which never appear in
eval or test), then keeps all its layers but the last and fine-tunes on the 12.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time

import numpy as np

from benchmarks.common import BOOKCOVERS
from bookcover import constants

CATEGORIES = 12
# Outside the repository: real covers never go into it, not even ignored.
CACHE = os.path.join(tempfile.gettempdir(), "bookcover-probe-covers{}.npz")
PRETRAIN_ONLY = 3  # the split index of the other categories' covers


def load_covers(others: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 covers, class index, split index 0/1/2), cached in the temp directory; with
    `others`, the other categories' covers too, as classes 12 and up, split PRETRAIN_ONLY."""
    cache = CACHE.format("-all" if others else "")
    if os.path.exists(cache):
        data = np.load(cache)
        return data["x"], data["y"], data["s"]
    from PIL import Image

    root = os.path.join(BOOKCOVERS, "covers")
    largest = sorted(os.listdir(root), key=lambda c: -len(os.listdir(os.path.join(root, c))))
    ordered = sorted(largest[:CATEGORIES]) + (sorted(largest[CATEGORIES:]) if others else [])
    xs, ys, ss = [], [], []
    for index, category in enumerate(ordered):
        names = sorted(
            os.listdir(os.path.join(root, category)),
            key=lambda n: hashlib.sha1(f"{constants.SAMPLE_SEED}:{n}".encode()).hexdigest(),
        )
        n_train, n_eval = len(names) * 3 // 5, len(names) // 5
        for i, name in enumerate(names):
            image = Image.open(os.path.join(root, category, name)).convert("RGB")
            size = (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT)
            xs.append(np.asarray(image.resize(size, Image.BILINEAR), np.uint8))
            ys.append(index)
            if index >= CATEGORIES:
                ss.append(PRETRAIN_ONLY)
            else:
                ss.append(0 if i < n_train else 1 if i < n_train + n_eval else 2)
    x, y, s = np.stack(xs), np.array(ys), np.array(ss)
    np.savez(cache, x=x, y=y, s=s)
    return x, y, s


def training_data(images, labels, batch_size: int, hp, weights) -> tuple[dict, list | None]:
    """fit()'s training arguments and class weights; under mixup, mixed tf.data batches
    that carry the weights themselves."""
    if not hp.get("mixup"):
        return {"x": images, "y": labels, "batch_size": batch_size}, weights
    import tensorflow as tf

    from models import inputs

    batches = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels), seed=constants.SAMPLE_SEED)
        .batch(batch_size)
    )
    return {"x": inputs.mix_batches(batches, hp.get("mixup"), weights)}, None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", default="{}", help="model options as JSON")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--first-filters", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=0)
    parser.add_argument("--pretrain-learning-rate", type=float, default=None)
    args = parser.parse_args(argv)

    import keras

    from models import model

    x, y, s = load_covers(others=args.pretrain_epochs > 0)
    train, evaluation, test = (s == 0), (s == 1), (s == 2)
    images = x.astype(np.float32) / 255.0
    mean, std = images[train].mean(axis=(0, 1, 2)), images[train].std(axis=(0, 1, 2))
    options = json.loads(args.options)
    hp = model.default_hyperparameters((args.learning_rate,), (args.first_filters,), options)
    if model.input_key(hp) == constants.IMAGE_KEY:
        images = (images - mean) / std
    keras.utils.set_random_seed(constants.SAMPLE_SEED)
    started = time.monotonic()
    pretrained = None
    if args.pretrain_epochs:
        rate = args.pretrain_learning_rate or args.learning_rate
        pre_hp = model.default_hyperparameters((rate,), (args.first_filters,), options)
        seen = s != 1
        seen &= s != 2
        pretrained, _ = fit(pre_hp, images, y, seen, None, args.pretrain_epochs, args.batch_size)
    pretrain_seconds = round(time.monotonic() - started)
    cnn, history = fit(hp, images, y, train, evaluation, args.epochs, args.batch_size, pretrained)
    test_labels = np.eye(CATEGORIES, dtype=np.float32)[y[test]]
    scores = cnn.evaluate(images[test], test_labels, verbose=0, return_dict=True)
    result = {
        "options": options,
        "learning_rate": args.learning_rate,
        "first_filters": args.first_filters,
        "epochs": args.epochs,
        "pretrain_epochs": args.pretrain_epochs,
        "batch_size": args.batch_size,
        "test_top_1_last_epoch": round(float(scores["accuracy"]), 4),
        "test_top_3_last_epoch": round(float(scores["top_3_accuracy"]), 4),
        "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
        "pretrain_seconds": pretrain_seconds,
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(result))
    return result


def fit(hp, images, y, rows, eval_rows, epochs: int, batch_size: int, pretrained=None):
    """The model trained on `rows` (classes: every class among them), validated on
    `eval_rows`; starting from `pretrained`'s layers but its logits when given."""
    from models import inputs, model

    classes = int(y[rows].max()) + 1
    labels = np.eye(classes, dtype=np.float32)[np.minimum(y, classes - 1)]
    steps = int(np.ceil(rows.sum() / batch_size))
    cnn = model.build_model(hp, classes, steps, epochs)
    if pretrained is not None:
        print("taken from pretraining:", len(model.take_weights(cnn, pretrained)), "layers")
    counts = np.bincount(y[rows], minlength=classes).tolist()
    weights = inputs.inverse_frequency_weights(counts) if hp.get("class_weights") else None
    callbacks = model.schedule_callbacks(hp)
    data, weights = training_data(images[rows], labels[rows], batch_size, hp, weights)
    validation = None if eval_rows is None else (images[eval_rows], labels[eval_rows])
    history = cnn.fit(
        **data,
        validation_data=validation,
        epochs=epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=2,
    )
    return cnn, history


if __name__ == "__main__":
    main()
