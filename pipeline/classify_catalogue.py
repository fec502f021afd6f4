"""Classifies a whole catalogue: python -m pipeline.classify_catalogue --books-csv CSV
--model outputs/serving_model --output DIR (Beam: locally, or on any runner)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from pipeline import flags
from pipeline.flags import bounded

LOG_FILE = "classify_catalogue.log"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.classify_catalogue",
        description="Classify the covers of a books_data.csv's rows (by default those "
        "without a category) with a pushed model, in batches on Beam: writes "
        "predictions.csv (one row per row taken, joined back on `row`) and summary.json.",
    )
    p.add_argument("--books-csv", required=True, help="a CSV in the books_data.csv format")
    p.add_argument(
        "--model",
        required=True,
        help="a pushed model version (outputs/serving_model/1795646947) or the folder of "
        "versions (outputs/serving_model: its newest)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="where the outputs go")
    p.add_argument(
        "--all", action="store_true", help="classify every row, not only those without a category"
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1, 4096),
        default=64,
        help="covers per call of the model's signature (default 64)",
    )
    p.add_argument(
        "--cache-dir",
        default="",
        metavar="DIR",
        help="keep downloaded covers here and reuse them (as ingestion's cache)",
    )
    p.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a Beam pipeline argument (repeatable); given, they replace the local "
        "DirectRunner's, e.g. --beam-arg=--runner=DataflowRunner (README, 'Classifying a "
        "catalogue')",
    )
    flags.download_flags(p)
    return p.parse_args(argv)


def summary_lines(summary: dict) -> list[str]:
    failed = ", ".join(f"{reason} {n}" for reason, n in summary["failed"].items()) or "none"
    top = list(summary["predicted_categories"].items())[:5]
    predicted = ", ".join(f"{category} {n}" for category, n in top) or "none"
    return [
        f"rows read: {summary['rows_read']}; taken: {summary['rows_taken']}; "
        f"classified: {summary['classified']}; failed: {failed}",
        f"predicted most often: {predicted}",
        f"{summary['seconds']:.0f} s, {summary['rows_per_second']:.1f} rows/s; model "
        f"version {summary['model_version']}",
        f"predictions: {summary['predictions']}",
    ]


def log_path(output_dir: str) -> str:
    """The full log: in the output folder, or beside this process for an object store's."""
    if "://" in output_dir:
        return os.path.join(tempfile.gettempdir(), f"classify_catalogue-{os.getpid()}.log")
    os.makedirs(output_dir, exist_ok=True)
    return os.path.join(output_dir, LOG_FILE)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from bookcover import console

    console.quiet_environment()  # before TensorFlow and Beam are imported
    from components.books_csv import CsvFormatError
    from components.catalogue.classify import CatalogueSettings, classify_catalogue

    console.configure_logging(log_path(args.output), steps=0)
    settings = CatalogueSettings(
        all_rows=args.all,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        fetch=flags.fetch_config_from(args),
    )
    try:
        summary = classify_catalogue(
            args.books_csv, args.model, args.output, settings, args.beam_arg or None
        )
    except (CsvFormatError, ValueError, FileNotFoundError) as e:
        sys.exit(f"python -m pipeline.classify_catalogue: {e}")
    finally:
        console.release_logging()
    for line in summary_lines(summary):
        print(line)
    return summary


if __name__ == "__main__":
    main()
