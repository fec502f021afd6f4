"""The title cases of the quality benchmark: a TF-IDF title baseline, and a model's test
accuracy with titles given or withheld, on the splits CoverExampleGen wrote."""

from __future__ import annotations

import glob
import os
import time

import numpy as np

from bookcover import constants

# The baseline's regularisation: chosen on the eval split, the test split read once.
BASELINE_C = (1.0, 3.0, 10.0, 30.0)
BATCH = 64


def read_examples(examples_uri: str, split: str, with_images: bool = False) -> dict:
    """Titles, categories (and encoded covers) of one split, in file order."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    found = {"titles": [], "categories": [], "images": []}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        found["titles"].append(feature[constants.TITLE_KEY].bytes_list.value[0].decode())
        found["categories"].append(feature[constants.CATEGORY_KEY].bytes_list.value[0].decode())
        if with_images:
            found["images"].append(feature[constants.IMAGE_KEY].bytes_list.value[0])
    return found


def scores(probabilities: np.ndarray, classes: list[str], truth: list[str]) -> dict:
    """Top-1 and top-3 accuracy and the confusion matrix [actual, predicted] (classes' order)."""
    index = {name: i for i, name in enumerate(classes)}
    actual = np.array([index[name] for name in truth])
    ranked = np.argsort(-probabilities, axis=1)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (actual, ranked[:, 0]), 1)
    return {
        "top_1": round(float(np.mean(ranked[:, 0] == actual)), 4),
        "top_3": round(float(np.mean((ranked[:, :3] == actual[:, None]).any(axis=1))), 4),
        "confusion_matrix": matrix,
    }


def read_splits(examples_uri: str) -> dict[str, dict]:
    """Every split, read once: titles and categories, and the covers of eval and test."""
    return {
        split: read_examples(examples_uri, split, with_images=split != "train")
        for split in constants.SPLIT_NAMES
    }


def title_baseline(splits: dict[str, dict], classes: list[str]) -> dict:
    """What a user would write for titles alone: TF-IDF on words and on character 3- and
    4-grams within words, logistic regression; C chosen on the eval split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    started = time.monotonic()
    train, evaluation, test = (splits[s] for s in constants.SPLIT_NAMES)

    def fitted(c: float):
        features = make_union(
            TfidfVectorizer(sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True, min_df=2),
        )
        model = make_pipeline(features, LogisticRegression(C=c, max_iter=3000))
        return model.fit(train["titles"], train["categories"])

    by_c = {c: fitted(c) for c in BASELINE_C}
    eval_top_1 = {
        c: m.score(evaluation["titles"], evaluation["categories"]) for c, m in by_c.items()
    }
    best = max(BASELINE_C, key=lambda c: eval_top_1[c])
    model = by_c[best]
    order = [list(model.classes_).index(name) for name in classes]
    probabilities = model.predict_proba(test["titles"])[:, order]
    return {
        **scores(probabilities, classes, test["categories"]),
        "C": best,
        "eval_top_1_by_C": {str(c): round(v, 4) for c, v in eval_top_1.items()},
        "seconds": round(time.monotonic() - started, 1),
    }


def model_scores(loaded, examples: dict, classes: list[str], titles: bool) -> dict:
    """A loaded model on a split's examples (read_examples with images): through
    serving_cover_and_title with the examples' titles, or, `titles` False, through
    serving_default (no titles)."""
    import tensorflow as tf

    names = [n.decode() for n in loaded.class_names.numpy()]
    found = []
    for start in range(0, len(examples["images"]), BATCH):
        images = tf.constant(examples["images"][start : start + BATCH])
        if titles:
            signature = loaded.signatures[constants.COVER_AND_TITLE_SIGNATURE]
            batch_titles = tf.constant(examples["titles"][start : start + BATCH])
            output = signature(images=images, titles=batch_titles)
        else:
            output = loaded.signatures["serving_default"](images=images)
        found.append(output["probabilities"].numpy())
    probabilities = np.concatenate(found)[:, [names.index(name) for name in classes]]
    return scores(probabilities, classes, examples["categories"])
