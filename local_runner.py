"""Runs the bookcover pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite MLMD."""

from __future__ import annotations

import argparse
import json
import os
import sys

from bookcover import constants
from models import hyperparameters
from pipeline import configs, flags
from pipeline.flags import bounded


def model_option(text: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE read as JSON (true, 0.1, 64) or else as a string (gap)."""
    from models.settings import check_model_option

    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=VALUE with NAME one of "
            f"{', '.join(hyperparameters.MODEL_OPTION_NAMES)}"
        )
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    try:
        return name, check_model_option(name, parsed)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def training_settings_from(args: argparse.Namespace, output_dir: str = ""):
    """The model preset with the flags' overrides (pipeline/presets.py, shared with Kubeflow)."""
    from pipeline import presets

    return presets.resolve(
        args.model_preset,
        learning_rates=args.learning_rates,
        first_filters=args.first_filters,
        batch_size=args.batch_size,
        epochs=args.epochs,
        model_options=dict(args.model_option),
        embedded=not args.books_csv,
        tuner_epochs=args.tuner_epochs,
        pretrain_epochs=args.pretrain_epochs,
        ensemble_members=args.ensemble_members,
        mixed_precision=args.mixed_precision,
        parallel_trials=args.parallel_trials,
        backup_dir=os.path.join(output_dir, "trainer_backup") if output_dir else "",
    )


def ingest_settings_from(args: argparse.Namespace, top_k: int | None, output_dir: str):
    """What CoverExampleGen selects, samples and fetches, from the flags."""
    from bookcover.settings import given
    from components.cover_example_gen.settings import IngestSettings

    return IngestSettings(
        top_k=None if args.min_books else top_k,
        min_books=args.min_books,
        **given(per_class=args.per_class, balance=args.balance),
        pretrain=args.pretrain_split,
        cache_dir=os.path.join(output_dir, "cache", "covers"),
        fetch=flags.fetch_config_from(args),
    )


def catalogue_settings_from(args: argparse.Namespace, output_dir: str):
    """What --classify-uncategorised classifies with, fetched as ingestion fetches."""
    from components.catalogue.classify import CatalogueSettings

    return CatalogueSettings(
        cache_dir=os.path.join(output_dir, "cache", "covers"),
        fetch=flags.fetch_config_from(args),
    )


def data_flags(parser: argparse.ArgumentParser) -> None:
    """Which CSV, which categories, how many covers of each."""
    p = parser.add_argument_group("data")
    p.add_argument(
        "--books-csv",
        help="a books_data.csv (Amazon Books Reviews format); its "
        "`image` column holds http(s) URLs, file:// URIs or paths",
    )
    p.add_argument(
        "--categories",
        type=bounded(int, 2),
        default=None,
        help=f"keep the K largest categories (default {constants.NUM_CATEGORIES}; "
        f"{configs.EMBEDDED_CATEGORIES} for the embedded data)",
    )
    p.add_argument(
        "--min-books",
        type=bounded(int, 1),
        default=None,
        help="instead of --categories: keep every category with at least M books",
    )
    p.add_argument(
        "--per-class",
        type=bounded(int, 1),
        default=None,
        help=f"covers sampled per category (default {constants.PER_CLASS}, at most the "
        "smallest selected category)",
    )
    p.add_argument(
        "--pretrain-split",
        action="store_true",
        help="write the pretraining split even without --pretrain-epochs, so that runs "
        "with and without pretraining share their examples (and the steps after them)",
    )
    p.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample every category down to the smallest selected one; --no-balance keeps "
        "up to --per-class books of each (pair it with --model-option class_weights=true); "
        f"default: {'--balance' if constants.BALANCE_CLASSES else '--no-balance'}",
    )


def training_flags(parser: argparse.ArgumentParser) -> None:
    """The grid search, the model preset and options, epochs, batch, precision."""
    p = parser.add_argument_group("training")
    p.add_argument(
        "--epochs",
        type=bounded(int, 1),
        default=None,
        help=f"Trainer epochs (default {hyperparameters.TRAIN_EPOCHS}; "
        f"{configs.EMBEDDED_TRAIN_EPOCHS} for the embedded data)",
    )
    p.add_argument(
        "--pretrain-epochs",
        type=bounded(int, 0),
        default=None,
        help="epochs of pretraining on every category's covers (the selection's train "
        "split and the covers it left) before the Trainer fine-tunes on the selected "
        f"categories; 0 leaves the step out (default {hyperparameters.PRETRAIN_EPOCHS})",
    )
    p.add_argument(
        "--ensemble-members",
        type=bounded(int, 1),
        default=None,
        help="networks the Trainer trains from different seeds and exports as one model "
        "averaging their probabilities (each costs a Trainer's time: 4 scored 45%% top-1 "
        f"against 41%% for 1 on real covers; default {hyperparameters.ENSEMBLE_MEMBERS})",
    )
    p.add_argument(
        "--tuner-epochs",
        type=bounded(int, 1),
        default=None,
        help=f"epochs per grid-search trial (default {hyperparameters.TUNER_EPOCHS})",
    )
    p.add_argument(
        "--learning-rates",
        type=bounded(float, 0, 10, low_open=True),
        nargs="+",
        default=None,
        help="grid: learning rates (default: the preset's, "
        f"{' '.join(map(str, hyperparameters.PRESETS['default'].learning_rates))} for 'default')",
    )
    p.add_argument(
        "--first-filters",
        type=bounded(int, 1, 1024),
        nargs="+",
        default=None,
        help="grid: filters of the first convolution (default: the preset's, "
        f"{' '.join(map(str, hyperparameters.PRESETS['default'].first_filters))} for 'default')",
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1, 65536),
        default=None,
        help="per-replica batch size (default: the preset's, "
        f"{hyperparameters.PRESETS['default'].batch_size} for 'default', "
        f"{hyperparameters.PRESETS['seed'].batch_size} for 'seed'; {configs.EMBEDDED_BATCH_SIZE} "
        "for the embedded data)",
    )
    p.add_argument(
        "--model-preset",
        choices=sorted(hyperparameters.PRESETS),
        default="default",
        help="model and training options: 'default' (the best measured on real covers) or "
        "'seed' (the seed work's exact CNN and training, the baseline)",
    )
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        type=model_option,
        help="override one model option of the preset, e.g. augment=true, head=gap, "
        f"label_smoothing=0.1 (repeatable; names: {', '.join(hyperparameters.MODEL_OPTION_NAMES)})",
    )
    p.add_argument(
        "--mixed-precision",
        choices=hyperparameters.MIXED_PRECISION_CHOICES,
        default=None,
        help=f"Trainer precision (default {hyperparameters.MIXED_PRECISION}): 'auto' uses "
        "mixed_float16 when a GPU is present",
    )
    p.add_argument(
        "--parallel-trials",
        type=bounded(int, 1),
        default=None,
        metavar="N",
        help="grid trials run at once, each in its own process on its own GPU or share of "
        "the cores (default: one per GPU, or 1 without one; benchmarks/README 'Tuner')",
    )


def validation_flags(parser: argparse.ArgumentParser) -> None:
    """What stops the run: the blessing bar, and data validation's findings."""
    p = parser.add_argument_group("validation and blessing")
    p.add_argument(
        "--accuracy-floor",
        type=bounded(float, 0),
        default=None,
        help="test accuracy a model needs to be blessed (default 1.5x chance; over 1 "
        "blesses no model)",
    )
    p.add_argument(
        "--allow-anomalies",
        action="store_true",
        help="go on to training when data validation finds problems (the summary and "
        "report record that they were allowed); by default the run stops before Transform",
    )


def run_flags(parser: argparse.ArgumentParser) -> None:
    """Where outputs go, how much is shown, how many Beam workers."""
    p = parser.add_argument_group("this run")
    p.add_argument(
        "--output-dir",
        default=configs.OUTPUT_DIR,
        help="where everything is written (default ./outputs)",
    )
    p.add_argument(
        "--classify-uncategorised",
        action="store_true",
        help="after the push, classify the CSV's rows without a category with the model "
        "just pushed (the ClassifyCatalogue step: predictions.csv and summary.json)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show every log line and third-party warning (the log file always has them)",
    )
    p.add_argument(
        "--direct-num-workers",
        type=bounded(int, 0, 1024),
        default=configs.DIRECT_NUM_WORKERS,
        help="Beam DirectRunner worker processes for StatisticsGen and Transform (default "
        f"{configs.DIRECT_NUM_WORKERS}: in this process, the fastest here; 0: one per core); "
        "CoverExampleGen and the Evaluator always run in this process",
    )
    p.add_argument(
        "--beam-arg",
        action="append",
        metavar="ARG",
        help="a Beam pipeline argument for the Beam steps (repeatable); given, they "
        "replace the DirectRunner's, e.g. --beam-arg=--runner=PortableRunner "
        "--beam-arg=--job_endpoint=HOST:8099 (README, 'Beam on a cluster')",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train and push a book-cover category classifier with TFX. With no "
        "--books-csv the run uses a small generated dataset (the embedded default)."
    )
    for add_flags in (
        data_flags,
        training_flags,
        validation_flags,
        flags.download_flags,
        run_flags,
    ):
        add_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from bookcover import console

    if not args.verbose:
        console.quiet_environment()  # before TensorFlow is imported, here and in Beam workers
    from pipeline import local_run

    output_dir = os.path.abspath(args.output_dir)
    with local_run.output_lock(output_dir):  # one run per output directory
        return run_pipeline(args, output_dir)


def books_csv_path(args: argparse.Namespace, output_dir: str) -> tuple[str, int]:
    """The CSV this run reads (the embedded data's, generated once, without --books-csv)
    and the number of categories to keep by size."""
    from pipeline import embedded_data

    if args.books_csv:
        csv_path = os.path.abspath(args.books_csv)
        if not os.path.isfile(csv_path):
            sys.exit(f"--books-csv: no such file: {csv_path}")
        return csv_path, args.categories or constants.NUM_CATEGORIES
    data_dir = os.path.join(output_dir, "embedded_data")
    csv_path = os.path.join(data_dir, "books_data.csv")
    if not os.path.exists(csv_path):  # generate once: its mtime is part of the cache key
        embedded_data.generate(data_dir)
    return csv_path, args.categories or configs.EMBEDDED_CATEGORIES


def categories_at_least(csv_path: str, min_books: int) -> int:
    """How many categories --min-books keeps; a bad CSV or setting ends the run in one line."""
    from components import books_csv

    try:
        return books_csv.count_selected_categories(csv_path, min_books=min_books)
    except ValueError as e:  # CsvFormatError too: the one line every CSV error gets
        sys.exit(
            f"bookcover: {e}"
            if isinstance(e, books_csv.CsvFormatError)
            else f"bookcover: {csv_path}: --min-books {min_books}: {e}"
        )


def run_pipeline(args: argparse.Namespace, output_dir: str) -> dict:
    # Imported here so that --help answers without loading TensorFlow.
    from tfx import v1 as tfx

    from pipeline import local_run, pipeline

    csv_path, categories = books_csv_path(args, output_dir)
    num_classes = categories_at_least(csv_path, args.min_books) if args.min_books else None
    metadata_path = os.path.join(output_dir, "metadata.sqlite")
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    bookcover_pipeline = pipeline.create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=os.path.join(output_dir, "pipeline"),
        data_dir=os.path.dirname(csv_path),
        csv_name=os.path.basename(csv_path),
        ingest=ingest_settings_from(args, categories, output_dir),
        training=training_settings_from(args, output_dir),
        serving_model_dir=os.path.join(output_dir, "serving_model"),
        accuracy_floor=args.accuracy_floor,
        num_classes=num_classes,
        allow_anomalies=args.allow_anomalies,
        metadata_connection_config=connection,
        beam_pipeline_args=args.beam_arg or pipeline.direct_runner_args(args.direct_num_workers),
        catalogue=catalogue_settings_from(args, output_dir)
        if args.classify_uncategorised
        else None,
    )
    return local_run.run(bookcover_pipeline, connection, output_dir, args.verbose)


if __name__ == "__main__":
    main()
