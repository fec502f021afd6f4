"""Quality benchmark: test accuracy of the real pipeline on real covers, beside the seed method.

Serves ../shared/bookcovers with its `serve` script, runs `local_runner.py` on the
12 largest categories with the project's default configuration, and reads top-1
and top-3 accuracy on the test split from the Evaluator. In the same run, the
seed's method (its CNN and optimiser, in-memory NumPy arrays scaled to [0, 1],
early stopping on validation loss with patience 4, no augmentation) trains on
the identical train and eval splits that CoverExampleGen wrote and is scored on
the identical test split. Extra arguments go to local_runner.py, for trying a
configuration: `python -m benchmarks.quality --model-option head=gap`.

`--titles` measures the cover-and-title model (inputs=cover_title) instead of the
seed method: the default pipeline, then the same pipeline with the title model in
the same output directory (so the same ExampleGen splits and Transform graph, from
the cache), a TF-IDF title-only baseline on those splits, and the title model's test
accuracy with the titles withheld (serving_default). Written to quality_titles.json.
`--title-option NAME=VALUE` sets a model option of the title run alone, so that the
cover run is still taken from the cache: `--titles --title-option title_dropout=0.7`.
`--pretraining` measures pretraining (TrainingSettings.pretrain_epochs): in one output
directory, the default pipeline writing the pretraining split without using it
(`--pretrain-split`), then the same with `--pretrain-epochs N --epochs M` (the
examples, Transform graph and Tuner from the cache: only the PretrainTrainer and the
Trainer run), and the seed method on the same splits. Written to
quality_pretraining.json.
With `--ensemble-members N` (a runner flag) the result also holds each member alone
on the test split, and the ensemble of the first ones (`ensemble_members`): the first
is the network the run would train without an ensemble, so the default and the
ensemble are measured on the same splits.
`--cover-model DIR` (a cover-only Trainer's model artifact from an earlier run in the
same output directory) skips the cover run: that model is scored on the title run's
own test split instead, which must be the same examples artifact it was trained on
(checked against ML Metadata): for a change that reruns the cover run's steps only
because a new option's default joined its settings, or because the model code changed
(its fingerprint is part of Transform's, the Tuner's and the Trainer's cache key).
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import tempfile
import time

import numpy as np

from benchmarks.common import (
    BOOKCOVERS,
    command_line,
    start_bookcovers_server,
    trainer_epochs,
    write_result,
)
from bookcover import constants
from models import hyperparameters

COMMAND = "python -m benchmarks.quality"
CATEGORIES = 12
SEED_LEARNING_RATE = 5e-4
SEED_FIRST_FILTERS = 32
SEED_PATIENCE = 4
SEED_MAX_EPOCHS = 40
SEED_BATCH_SIZE = hyperparameters.SEED_BATCH_SIZE


def read_split(examples_uri: str, split: str) -> tuple[np.ndarray, list[str]]:
    """(uint8 covers [n, 150, 100, 3], category names) of one split of CoverExampleGen's output."""
    import tensorflow as tf
    from PIL import Image

    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    images, categories = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        jpeg = feature[constants.IMAGE_KEY].bytes_list.value[0]
        images.append(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
        categories.append(feature[constants.CATEGORY_KEY].bytes_list.value[0].decode())
    return np.stack(images), categories


def members_scored(run) -> list[dict] | None:
    """Each network of an ensemble run (`--ensemble-members N`) alone on the test split,
    exported alone and scored through serving_default, with the mean of it and every
    member before it (`running_top_1`: the ensemble of the first ones); None for a single
    network. The first member is the network a run without an ensemble trains (the same
    job and seed): today's default, on the same splits as the ensemble."""
    from models import history

    later = history.later_member_dirs(run.model_run)
    if not later:
        return None
    import keras_tuner
    import tensorflow as tf
    import tensorflow_transform as tft

    from benchmarks import levers, titles
    from models import export, inputs, model, trainer
    from reporting.summary import read_json

    hp = keras_tuner.HyperParameters.from_config(
        read_json(run.best_hyperparameters, "best_hyperparameters.txt")
    )
    output = tft.TFTransformOutput(run.transform_graph)
    classes = inputs.category_names(output)
    test = titles.read_examples(run.examples, "test", with_images=True)
    found, total = [], 0
    for number, run_dir in enumerate([run.model_run, *later], 1):
        network = model.build_model(
            hp, len(classes), title_vocabulary_size=trainer.title_ids_of(output, hp)
        )
        network.load_weights(os.path.join(run_dir, trainer.BEST_WEIGHTS))
        with tempfile.TemporaryDirectory() as export_dir:
            export.export_model(network, output, export_dir)
            probabilities = levers.probabilities(
                tf.saved_model.load(export_dir), test["images"], classes
            )
        total = total + probabilities
        scored = titles.scores(probabilities, classes, test["categories"])
        running = titles.scores(total / number, classes, test["categories"])
        found.append(
            {
                "member": number,
                "top_1": scored["top_1"],
                "top_3": scored["top_3"],
                "running_top_1": running["top_1"],
            }
        )
    return found


def seed_method(examples_uri: str) -> dict:
    """Trains and tests the seed's CNN the seed's way on the pipeline's own splits."""
    import keras

    from models import model

    splits = {s: read_split(examples_uri, s) for s in constants.SPLIT_NAMES}
    names = sorted(set(splits["train"][1]))
    index = {n: i for i, n in enumerate(names)}

    def arrays(split: str):
        images, categories = splits[split]
        labels = np.eye(len(names), dtype=np.float32)[[index[c] for c in categories]]
        return images.astype(np.float32) / 255.0, labels

    (x_train, y_train), (x_eval, y_eval), (x_test, y_test) = map(arrays, constants.SPLIT_NAMES)
    keras.utils.set_random_seed(constants.SAMPLE_SEED)
    hp = model.default_hyperparameters(
        (SEED_LEARNING_RATE,), (SEED_FIRST_FILTERS,), hyperparameters.SEED_MODEL_OPTIONS
    )
    cnn = model.build_model(hp, len(names))
    started = time.monotonic()
    history = cnn.fit(
        x_train,
        y_train,
        validation_data=(x_eval, y_eval),
        epochs=SEED_MAX_EPOCHS,
        batch_size=SEED_BATCH_SIZE,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=SEED_PATIENCE, restore_best_weights=True
            )
        ],
        verbose=2,
    )
    scores = cnn.evaluate(x_test, y_test, verbose=0, return_dict=True)
    return {
        "top_1": round(float(scores["accuracy"]), 4),
        "top_3": round(float(scores["top_3_accuracy"]), 4),
        "epochs": len(history.history["loss"]),
        "train_seconds": round(time.monotonic() - started, 1),
        "examples": {s: len(splits[s][1]) for s in constants.SPLIT_NAMES},
    }


def run_pipeline(out: str, runner_args: list[str]) -> tuple[dict, list[str]]:
    """The pipeline on the real covers, served on 127.0.0.1: its summary and its flags."""
    import local_runner

    csv_path = os.path.abspath(os.path.join(BOOKCOVERS, "books_data.csv"))
    argv_runner = [
        "--books-csv",
        csv_path,
        "--categories",
        str(CATEGORIES),
        "--output-dir",
        out,
        *runner_args,
    ]
    pid = start_bookcovers_server()
    try:
        return local_runner.main(argv_runner), argv_runner
    finally:
        os.kill(pid, 15)


def metadata_connection(out: str):
    """The ML Metadata store of a pipeline output directory."""
    from tfx import v1 as tfx

    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(out, "metadata.sqlite")
    )


def last_run(out: str):
    """The artifacts of the last run in `out`, from ML Metadata (a step taken from the
    cache gives the artifact it made before, in an older directory)."""
    from pipeline import configs
    from reporting import run_artifacts

    return run_artifacts.latest_run(metadata_connection(out), configs.PIPELINE_NAME).artifacts


def evaluated(run, summary: dict, class_names: list[str]) -> dict:
    """The Evaluator's figures of a run: top-1, top-3, per class, Trainer time."""
    from reporting import evaluation

    matrix = evaluation.confusion_matrix(run.evaluation, len(class_names))
    return {
        "top_1": round(summary["test_accuracy"], 4),
        "top_3": round(summary["test_top_3_accuracy"], 4),
        "per_class": evaluation.per_class(matrix, class_names),
        "blessed": summary["blessed"],
        "model_options": summary.get("best_hyperparameters"),
        "trainer_minutes": round(summary["components"]["Trainer"]["wall_time_s"] / 60, 1),
        "tuner_minutes": round(summary["components"]["Tuner"]["wall_time_s"] / 60, 1),
    }


def with_per_class(found: dict, class_names: list[str]) -> dict:
    from reporting import evaluation

    matrix = found.pop("confusion_matrix")
    return {**found, "per_class": evaluation.per_class(matrix, class_names)}


def title_cases(run, cover_model: str, class_names: list[str]) -> dict:
    """The title-only baseline and the title model (`run`'s) on the test split, given and
    without titles, and the figures a choice of options may look at: the same on the
    eval split."""
    import tensorflow as tf

    from benchmarks import titles

    splits = titles.read_splits(run.examples)
    fused = tf.saved_model.load(os.path.join(run.model, "Format-Serving"))
    baseline = titles.title_baseline(splits, class_names)
    served = titles.model_scores(fused, splits["test"], class_names, True)
    served.pop("confusion_matrix")
    without = titles.model_scores(fused, splits["test"], class_names, False)
    evaluation = splits["eval"]
    eval_split = {
        "cover_only": titles.model_scores(
            tf.saved_model.load(cover_model), evaluation, class_names, False
        ),
        "cover_title": titles.model_scores(fused, evaluation, class_names, True),
        "cover_title_without_titles": titles.model_scores(fused, evaluation, class_names, False),
    }
    return {
        "title_only_tfidf": with_per_class(baseline, class_names),
        "cover_title_served": served,
        "cover_title_without_titles": with_per_class(without, class_names),
        "eval_split_top_1": {name: found["top_1"] for name, found in eval_split.items()},
    }


def trained_on(out: str, model_uri: str) -> str:
    """The examples artifact's URI that the Trainer which made `model_uri` read."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    store = metadata_store.MetadataStore(metadata_connection(out))
    (model,) = store.get_artifacts_by_uri(model_uri.rstrip("/"))
    made = [e for e in store.get_events_by_artifact_ids([model.id]) if e.type == e.OUTPUT]
    read = store.get_events_by_execution_ids([made[0].execution_id])
    inputs = store.get_artifacts_by_id(
        [e.artifact_id for e in read if e.type == metadata_store_pb2.Event.INPUT]
    )
    examples_type = store.get_artifact_type("Examples").id
    (examples,) = [a.uri for a in inputs if a.type_id == examples_type]
    return examples


def existing_cover_model(out: str, model_uri: str, fused_run, class_names: list[str]) -> dict:
    """An earlier cover-only Trainer's model scored on the test split of `fused_run`, which
    must be the examples it was trained on."""
    import tensorflow as tf

    from benchmarks import titles

    examples = trained_on(out, model_uri)
    if examples != fused_run.examples:
        raise SystemExit(f"{model_uri} was trained on {examples}, not {fused_run.examples}")
    test = titles.read_examples(fused_run.examples, "test", with_images=True)
    loaded = tf.saved_model.load(os.path.join(model_uri, "Format-Serving"))
    found = with_per_class(titles.model_scores(loaded, test, class_names, False), class_names)
    return {**found, "model": model_uri, "trained_on": examples}


def titles_main(
    out: str,
    runner_args: list[str],
    command: str,
    title_options: list[str] = (),
    cover_model_uri: str = "",
) -> dict:
    """The cover-only default, the title-only baseline, the cover-and-title model with and
    without titles, on the same splits (see the module's docstring)."""
    started = time.monotonic()
    title_flags = ["--model-option", "inputs=cover_title"]
    for option in title_options:
        title_flags += ["--model-option", option]
    from reporting import html_report

    cover = None
    if not cover_model_uri:
        cover_summary, _ = run_pipeline(out, runner_args)
        cover_run = last_run(out)
        class_names = html_report.category_names(cover_run.transform_graph)
        cover = evaluated(cover_run, cover_summary, class_names)
        cover_model_uri = cover_run.model
    fused_summary, argv_runner = run_pipeline(out, [*runner_args, *title_flags])
    fused_run = last_run(out)
    class_names = html_report.category_names(fused_run.transform_graph)
    if cover is None:
        cover = existing_cover_model(out, cover_model_uri, fused_run, class_names)
    fused = evaluated(fused_run, fused_summary, class_names)
    cases = {"cover_only": cover, "cover_title": fused}
    cover_model = os.path.join(cover_model_uri, "Format-Serving")
    cases.update(title_cases(fused_run, cover_model, class_names))
    withheld = cases["cover_title_without_titles"]["top_1"]
    title_only = cases["title_only_tfidf"]["top_1"]
    return write_result(
        "quality_titles",
        ours=fused["top_1"],
        baseline=title_only,
        ratio=round(fused["top_1"] / title_only, 2),
        unit="top-1 test accuracy (baseline: TF-IDF titles alone)",
        command=command,
        goals={
            "beats_cover_only_and_title_only": fused["top_1"] > max(cover["top_1"], title_only),
            "at_least_55_percent": fused["top_1"] >= 0.55,
            "without_titles_within_2_points_of_cover_only": withheld >= cover["top_1"] - 0.02,
        },
        categories=class_names,
        examples={s: sum(c.values()) for s, c in fused_summary["examples"].items()},
        cases=cases,
        runner_args=argv_runner[6 : len(argv_runner) - len(title_flags)],
        title_run_args=title_flags,
        total_seconds=round(time.monotonic() - started, 1),
    )


def pretraining_main(
    out: str, runner_args: list[str], command: str, pretrain_epochs: int, fine_tune_epochs: int
) -> dict:
    """The seed method, the default without pretraining and with it, on the same splits."""
    from reporting import html_report

    started = time.monotonic()
    cases, runs = {}, {}
    flags = {
        "default": ["--pretrain-split"],
        "pretrained": [
            "--pretrain-epochs",
            str(pretrain_epochs),
            "--epochs",
            str(fine_tune_epochs),
        ],
    }
    for name, extra in flags.items():
        summary, argv_runner = run_pipeline(out, [*runner_args, *extra])
        runs[name] = last_run(out)
        class_names = html_report.category_names(runs[name].transform_graph)
        cases[name] = evaluated(runs[name], summary, class_names)
        if name == "pretrained":
            step = summary["components"]["PretrainTrainer"]
            cases[name]["pretrain_trainer_minutes"] = round(step["wall_time_s"] / 60, 1)
    if runs["default"].examples != runs["pretrained"].examples:
        raise SystemExit("the two runs read different examples: not the same splits")
    cases["seed"] = seed_method(runs["default"].examples)
    ours, default = cases["pretrained"]["top_1"], cases["default"]["top_1"]
    return write_result(
        "quality_pretraining",
        ours=ours,
        baseline=default,
        ratio=round(ours / default, 2),
        unit="top-1 test accuracy (baseline: the default without pretraining)",
        command=command,
        goals={"at_least_45_percent": ours >= 0.45, "moonshot_50_percent": ours >= 0.50},
        categories=class_names,
        examples={s: sum(c.values()) for s, c in summary["examples"].items()},
        cases=cases,
        runner_args=argv_runner[6:],
        total_seconds=round(time.monotonic() - started, 1),
    )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The benchmark's flags, and the rest, which go to local_runner.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", help="keep the pipeline output here (default: a temp dir)")
    parser.add_argument("--skip-baseline", action="store_true", help="only our pipeline")
    parser.add_argument(
        "--titles", action="store_true", help="the cover-and-title model's cases (see above)"
    )
    parser.add_argument(
        "--title-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --titles: a model option of the title run alone",
    )
    parser.add_argument(
        "--cover-model",
        default="",
        metavar="DIR",
        help="with --titles: score this earlier cover-only model instead of a cover run",
    )
    parser.add_argument(
        "--pretraining", action="store_true", help="pretraining's cases (see above)"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="with --pretraining")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=40, help="with --pretraining: the Trainer's"
    )
    args, runner_args = parser.parse_known_args(argv)
    if (args.title_option or args.cover_model) and not args.titles:
        parser.error("--title-option and --cover-model need --titles")
    return args, runner_args


def main(argv: list[str] | None = None) -> dict:
    args, runner_args = parse_args(argv)
    command = command_line(COMMAND, argv)
    if args.pretraining:
        out = args.output_dir or tempfile.mkdtemp(prefix="bookcover-quality-pretraining-")
        return pretraining_main(
            out, runner_args, command, args.pretrain_epochs, args.fine_tune_epochs
        )
    if args.titles:
        out = args.output_dir or tempfile.mkdtemp(prefix="bookcover-quality-titles-")
        return titles_main(out, runner_args, command, args.title_option, args.cover_model)

    out = args.output_dir or tempfile.mkdtemp(prefix="bookcover-quality-")
    started = time.monotonic()
    summary, argv_runner = run_pipeline(out, runner_args)
    pipeline_s = time.monotonic() - started
    # Only now: these import TensorFlow, which must come after the runner's quiet setup.
    from reporting import evaluation, html_report

    # This run's artifacts, not a glob: a rerun in the same output directory (another
    # --ensemble-members, the earlier steps from the cache) leaves older ones beside them.
    run = last_run(out)
    class_names = html_report.category_names(run.transform_graph)
    matrix = evaluation.confusion_matrix(run.evaluation, len(class_names))
    epochs = trainer_epochs(out)
    members = members_scored(run)
    baseline = None if args.skip_baseline else seed_method(run.examples)
    total_s = time.monotonic() - started
    if not args.output_dir:
        shutil.rmtree(out, ignore_errors=True)

    ours = summary["test_accuracy"]
    return write_result(
        "quality",
        ours=round(ours, 4),
        baseline=baseline and baseline["top_1"],
        ratio=baseline and round(ours / baseline["top_1"], 2),
        unit="top-1 test accuracy",
        command=command,
        ours_top_3=round(summary["test_top_3_accuracy"], 4),
        baseline_top_3=baseline and baseline["top_3"],
        chance=round(1 / len(class_names), 4),
        categories=class_names,
        examples={s: sum(c.values()) for s, c in summary["examples"].items()},
        per_class=evaluation.per_class(matrix, class_names),
        confusion_matrix=matrix.tolist(),
        runner_args=argv_runner[6:],
        model_options=summary.get("best_hyperparameters"),
        tuner_trials=summary.get("tuner_trials"),
        blessed=summary["blessed"],
        baseline_detail=baseline,
        pipeline_seconds=round(pipeline_s, 1),
        total_seconds=round(total_s, 1),
        components={k: v["wall_time_s"] for k, v in summary["components"].items()},
        trainer_epochs=epochs,
        ensemble_members=members,
    )


if __name__ == "__main__":
    main()
