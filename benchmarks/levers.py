"""Levers on trained cover models, scored on the pipeline's own eval and test splits: an
ensemble of the models given (their probabilities averaged), and test-time augmentation
without flips (covers carry text): each cover also seen as crops, probabilities averaged.

    python -m benchmarks.levers --examples EXAMPLES_URI --model NAME=MODEL_DIR ...

Each MODEL_DIR is a Trainer's model artifact (or its Format-Serving directory), served
through `serving_default` from encoded images, as TF Serving would serve it. Only the
eval split decides between the cases; the test split is read once per case, here.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os

import numpy as np

from benchmarks import titles
from benchmarks.common import command_line, write_result

COMMAND = "python -m benchmarks.levers"
# (share of width and height kept, horizontal and vertical position of the window: 0 =
# left/top, 1 = right/bottom): the whole cover, a centre crop, and the four corners.
VIEWS = ((1.0, 0.5, 0.5), (0.9, 0.5, 0.5)) + tuple(
    (0.94, x, y) for x, y in itertools.product((0.0, 1.0), repeat=2)
)


def cropped(encoded: bytes, keep: float, x: float, y: float) -> bytes:
    """The cover's window of `keep` of its width and height at (x, y), as PNG (lossless:
    the model decodes and resizes it as it does any cover)."""
    from PIL import Image

    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    width, height = image.size
    w, h = round(width * keep), round(height * keep)
    left, top = round((width - w) * x), round((height - h) * y)
    out = io.BytesIO()
    image.crop((left, top, left + w, top + h)).save(out, "PNG")
    return out.getvalue()


def probabilities(loaded, images: list[bytes], classes: list[str]) -> np.ndarray:
    import tensorflow as tf

    names = [n.decode() for n in loaded.class_names.numpy()]
    found = []
    for start in range(0, len(images), titles.BATCH):
        batch = tf.constant(images[start : start + titles.BATCH])
        found.append(loaded.signatures["serving_default"](images=batch)["probabilities"].numpy())
    return np.concatenate(found)[:, [names.index(name) for name in classes]]


def model_views(
    loaded, examples: dict, classes: list[str], whole_only: bool = False
) -> list[np.ndarray]:
    """A model's probabilities for each view of every cover (VIEWS' order; the whole
    cover's only, when `whole_only`)."""
    return [
        probabilities(
            loaded, [cropped(c, *view) if view[0] < 1 else c for c in examples["images"]], classes
        )
        for view in VIEWS[: 1 if whole_only else None]
    ]


def serving_dir(path: str) -> str:
    inner = os.path.join(path, "Format-Serving")
    return inner if os.path.isdir(inner) else path


def ensembles(views: dict[str, list[np.ndarray]]) -> list[tuple[str, list[np.ndarray]]]:
    """Every ensemble of two or more of the models (probabilities averaged, view by view):
    all of them as "ensemble", smaller ones as "ensemble of A + B"."""
    found = []
    for size in range(2, len(views) + 1):
        for names in itertools.combinations(views, size):
            by_view = [
                np.mean(same_view, axis=0)
                for same_view in zip(*(views[n] for n in names), strict=True)
            ]
            name = "ensemble" if size == len(views) else "ensemble of " + " + ".join(names)
            found.append((name, by_view))
    return found


def cases(
    views: dict[str, list[np.ndarray]], truth: list[str], classes: list[str], tta: bool = True
) -> dict:
    """Top-1 and top-3 of each model and of their ensembles, with and without the views."""
    found = {}
    for name, by_view in [*views.items(), *ensembles(views)]:
        for suffix, probs in (("", by_view[0]), (" + TTA", np.mean(by_view, axis=0)))[: 1 + tta]:
            scored = titles.scores(probs, classes, truth)
            found[name + suffix] = {"top_1": scored["top_1"], "top_3": scored["top_3"]}
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", required=True, help="CoverExampleGen's examples artifact")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--baseline", help="the NAME of the model the others compare with")
    parser.add_argument("--no-tta", action="store_true", help="the whole covers only")
    parser.add_argument("--result", default="levers", help="results/RESULT.json")
    args = parser.parse_args(argv)
    import tensorflow as tf

    models = dict(spec.split("=", 1) for spec in args.model)
    loaded = {name: tf.saved_model.load(serving_dir(path)) for name, path in models.items()}
    classes = [n.decode() for n in next(iter(loaded.values())).class_names.numpy()]
    by_split = {}
    for split in ("eval", "test"):
        examples = titles.read_examples(args.examples, split, with_images=True)
        views = {name: model_views(m, examples, classes, args.no_tta) for name, m in loaded.items()}
        by_split[split] = cases(views, examples["categories"], classes, not args.no_tta)
    chosen = max(by_split["eval"], key=lambda case: by_split["eval"][case]["top_1"])
    baseline = args.baseline or next(iter(models))
    ours, theirs = by_split["test"][chosen]["top_1"], by_split["test"][baseline]["top_1"]
    for case in by_split["eval"]:
        found = [by_split[split][case]["top_1"] for split in ("eval", "test")]
        print(f"{case:30s} eval {found[0]:.4f}  test {found[1]:.4f}")
    return write_result(
        args.result,
        ours=ours,
        baseline=theirs,
        ratio=round(ours / theirs, 3),
        unit=f"top-1 test accuracy of the case best on eval ({chosen}) and of {baseline}",
        command=command_line(COMMAND, argv),
        chosen_on_eval=chosen,
        models=models,
        views=[list(v) for v in VIEWS],
        eval_split=by_split["eval"],
        test_split=by_split["test"],
    )


if __name__ == "__main__":
    main()
