"""Category analysis (table, half-coverage count, plot) and ingestion counts for CoverExampleGen."""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import logging
import os

from apache_beam.metrics.metric import MetricsFilter
from tfx.dsl.io import fileio

from bookcover import constants, plotting, spreadsheet
from components import books_csv
from components.cover_example_gen.settings import IngestSettings

COUNTS_FILE = "category_counts.csv"
ANALYSIS_FILE = "category_analysis.json"
PLOT_FILE = "category_cumulative_share.png"
INGEST_FILE = "ingest_summary.json"
SELECTION_FILE = "selected_books.jsonl"


def analyse_and_select(csv_path: str, settings: IngestSettings, out_dir: str) -> int:
    """Reads the CSV, writes the category analysis and the sampled books (SELECTION_FILE,
    one JSON object per line, for the download step to read; the books kept for
    pretraining marked `"pretrain": true`) to `out_dir`; returns how many books were
    sampled, for pretraining too."""
    pool = None
    if settings.pretrain:
        pool = books_csv.PretrainPool(settings.pretrain_min_books, settings.pretrain_max_categories)
    selection = books_csv.select_books(
        csv_path,
        settings.top_k,
        settings.min_books,
        settings.per_class,
        settings.seed,
        settings.balance,
        pool,
    )
    read, table, categories = selection.reader, selection.table, selection.categories
    fileio.makedirs(out_dir)
    write_selection(
        selection.books,
        os.path.join(out_dir, SELECTION_FILE),
        selection.pretrain_books,
        settings.seed,
    )
    write_counts(table, os.path.join(out_dir, COUNTS_FILE))
    plot_cumulative_share(table, os.path.join(out_dir, PLOT_FILE), len(categories))
    summary = {
        "csv": csv_path,
        "csv_encoding": read.encoding,
        "undecodable_bytes": read.undecodable_bytes,
        "data_lines": read.lines,
        "rows_read": read.rows_read,
        # Reconciles lines with rows: line breaks inside quoted fields, blank lines.
        "lines_not_starting_a_row": read.lines_not_starting_a_row,
        "usable_rows": read.usable_rows,
        "skipped_rows": dict(sorted(read.skipped.items())),
        "categories_total": len(table),
        "categories_covering_half": books_csv.categories_covering(table, 0.5),
        "selected_categories": categories,
        "per_class": dict(collections.Counter(b.category for b in selection.books)),
        "selected_books": len(selection.books),
    }
    if pool is not None:
        summary["pretrain_books"] = len(selection.pretrain_books)
        summary["pretrain_per_category"] = dict(
            collections.Counter(b.category for b in selection.pretrain_books)
        )
    _write_text(os.path.join(out_dir, ANALYSIS_FILE), json.dumps(summary, indent=2))
    logging.info("category analysis: %s", json.dumps(summary))
    return len(selection.books) + len(selection.pretrain_books)


def write_selection(
    books: list[books_csv.Book],
    path: str,
    pretrain_books: list[books_csv.Book] = (),
    seed: int = constants.SAMPLE_SEED,
) -> None:
    """The sampled books as JSON lines: read back by a Beam source, so that the
    selection travels as a file and not inside the job graph (Dataflow refuses
    graphs over about 10 MB).

    In a seeded random order, not category by category: the downloads are asked for
    in about this order and a large selection's splits are written as they finish,
    so grouped books would give grouped training files (a Trainer's shuffle buffer
    then mixes few categories)."""
    marked = [*((b, False) for b in books), *((b, True) for b in pretrain_books)]
    marked.sort(key=lambda item: (books_csv.sample_key(seed + 1, item[0].row), item[0].row))
    with fileio.open(path, "w") as f:
        for book, pretrain in marked:
            fields = dataclasses.asdict(book)
            fields["authors"] = list(book.authors)
            del fields["authors_field"]
            if pretrain:
                fields["pretrain"] = True
            f.write(json.dumps(fields) + "\n")


def read_selection(path: str) -> list[dict]:
    with fileio.open(path) as f:
        return [json.loads(line) for line in f]


def write_counts(table: list[books_csv.CategoryCount], path: str) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["category", "count", "cumulative_share"])
    for row in table:
        writer.writerow(
            spreadsheet.safe_row([row.category, row.count, f"{row.cumulative_share:.6f}"])
        )
    _write_text(path, out.getvalue())


def _write_text(path: str, text: str) -> None:
    """Writes through fileio, so artifact URIs may be gs:// or s3:// as on Kubeflow."""
    with fileio.open(path, "w") as f:
        f.write(text)


def plot_cumulative_share(table: list[books_csv.CategoryCount], path: str, selected: int) -> None:
    """Sorted cumulative category frequency, with the selection and 50% marked."""
    plt = plotting.pyplot()
    ranks = list(range(1, len(table) + 1))
    shares = [100 * r.cumulative_share for r in table]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(ranks, shares, marker="o" if len(table) <= 60 else None, markersize=3)
    ax.axhline(50, color="grey", linestyle=":", label="half of the books")
    ax.axvline(selected, color="tab:red", linestyle="--", label=f"{selected} categories kept")
    ax.set_xscale("log" if len(table) > 60 else "linear")
    ax.set_xlabel("categories, largest first (rank)")
    ax.set_ylabel("cumulative share of books (%)")
    ax.set_ylim(0, 101)
    ax.set_title(f"Cumulative category frequency ({len(table)} categories)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    plotting.save_png(fig, path)


def ingest_counts(metrics, namespace: str, selected: int) -> dict:
    """Beam counters of the run, gathered into one summary."""
    queried = metrics.query(MetricsFilter().with_namespace(namespace))
    values = {r.key.metric.name: r.committed or r.attempted or 0 for r in queried["counters"]}
    spans = {r.key.metric.name: r.committed or r.attempted for r in queried["distributions"]}
    failed_by_reason = {
        name.split("/", 1)[1]: n for name, n in sorted(values.items()) if name.startswith("failed/")
    }
    examples: dict = collections.defaultdict(dict)
    for name, n in sorted(values.items()):
        if name.startswith("examples/"):
            _, split, category = name.split("/", 2)
            examples[split][category] = n
    return {
        "selected": selected,
        "downloaded": values.get("downloaded", 0),
        "cached": values.get("cached", 0),
        "failed": sum(failed_by_reason.values()),
        "failed_by_reason": failed_by_reason,
        "duplicates_dropped": values.get("duplicates_dropped", 0),
        "cache_entries_dropped": values.get("cache_entries_dropped", 0),
        # Pretraining covers of a book that eval or test holds (under another category).
        "pretrain_held_out_dropped": values.get("pretrain_held_out_dropped", 0),
        "examples": dict(examples),
        **download_stage(spans, values.get("downloaded", 0) + values.get("cached", 0)),
    }


def download_stage(spans: dict, covers: int) -> dict:
    """Wall time of the download stage (first bundle's start to last bundle's end) and its
    rate: the part of ingestion that downloads and resizes, without the fixed costs."""
    start, end = spans.get("download/stage_start_ms"), spans.get("download/stage_end_ms")
    if not start or not end or not start.count:
        return {}
    seconds = max((end.max - start.min) / 1000, 1e-3)
    return {
        "download_stage_seconds": round(seconds, 2),
        "download_stage_covers_per_s": round(covers / seconds, 1),
    }


def write_ingest_summary(out_dir: str, counts: dict) -> None:
    _write_text(os.path.join(out_dir, INGEST_FILE), json.dumps(counts, indent=2, sort_keys=True))
