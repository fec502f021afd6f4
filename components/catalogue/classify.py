"""Classifies the covers of a books CSV with Beam: its rows, their covers through the
ingestion downloader, RunInference over the pushed model, a predictions CSV and a summary."""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from tfx.dsl.io import fileio

from bookcover import constants, spreadsheet
from bookcover.cover_image import to_cover_image
from bookcover.fetch_config import CoverError, FetchConfig
from bookcover.settings import known_fields
from components.books_csv import Book, BookReader
from components.catalogue.inference import CoverModelHandler, load_ahead, resolve_model
from components.cover_downloads import DownloadCoversFn

STEP = "ClassifyCatalogue"
PREDICTIONS_FILE = "predictions.csv"
SUMMARY_FILE = "summary.json"
GALLERY_DIR = "gallery"
GALLERY_FILE = "gallery.json"
# The most confident covers of each predicted category, kept for the report.
GALLERY_PER_CATEGORY = 6
# Images come as fetched (up to the download's byte limit): a candidate for the gallery
# larger than this is made a stored cover first, so the ranking holds little per cover.
GALLERY_MAX_IMAGE_BYTES = 256 * 1024
TOP_K = 3
PREDICTION_FIELDS = (
    "row", "title", "image_url",
    *(f"{kind}_{k}" for k in range(1, TOP_K + 1) for kind in ("category", "score")),
    "model_version", "failure_reason", "failure_detail",
)  # fmt: skip
# Why a row taken is not a usable book, when that does not stop its classification.
CLASSIFIABLE = ("", "no_category")
READ_COUNTS = "read_counts"  # ClassifyRows' output of the read's counts
UNREADABLE = "unreadable"  # read_rows' output of the rows that cannot be classified


@dataclasses.dataclass(frozen=True)
class CatalogueSettings:
    """Which rows to classify, in what batches, and how to fetch their covers."""

    all_rows: bool = False  # every row, not only those without a category
    batch_size: int = 64
    cache_dir: str = ""
    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size}: expected at least 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CatalogueSettings:
        data = known_fields(cls, data, "catalogue settings")
        data["fetch"] = FetchConfig(**known_fields(FetchConfig, data.get("fetch", {}), "fetch"))
        return cls(**data)


def taken(book: Book, reason: str, all_rows: bool) -> bool:
    """Whether the catalogue classifies this row: every row with `all_rows`, else those
    whose category field is empty (with or without an image URL)."""
    return all_rows or (not book.category and reason in ("no_category", "no_image"))


def read_rows(csv_path: str, all_rows: bool) -> Iterator[dict | beam.pvalue.TaggedOutput]:
    """The rows to classify, one streaming pass: those with a cover to fetch, and, tagged
    UNREADABLE, the prediction rows of those that cannot be classified (no image URL, an
    unreadable row). Last, tagged READ_COUNTS: rows in the file, rows taken and covers to
    fetch (the live progress's total)."""
    reader = BookReader(csv_path)
    rows = covers = 0
    for book, reason in reader.every_row():
        if taken(book, reason, all_rows):
            rows += 1
            found = {"row": book.row, "title": book.title, "image_url": book.image_url}
            if reason in CLASSIFIABLE:
                covers += 1
                yield found
            else:
                yield beam.pvalue.TaggedOutput(UNREADABLE, failed_row(found, reason))
    counts = {"rows_read": reader.rows_read, "rows_taken": rows, "covers_to_fetch": covers}
    yield beam.pvalue.TaggedOutput(READ_COUNTS, counts)


def predicted_row(item: tuple[dict, object]) -> dict:
    key, result = item
    answer = result.inference
    if "error" in answer:
        return failed_row(key, "not_classified", answer["error"])
    row = {**key, "model_version": result.model_id, "failure_reason": "", "failure_detail": ""}
    for k in range(TOP_K):
        found = k < len(answer["categories"])
        row[f"category_{k + 1}"] = answer["categories"][k] if found else ""
        row[f"score_{k + 1}"] = answer["scores"][k] if found else ""
    return row


def failed_row(book: dict, reason: str, detail: str = "") -> dict:
    row = dict.fromkeys(PREDICTION_FIELDS, "")
    row.update(row=book["row"], title=book["title"], image_url=book["image_url"])
    row.update(failure_reason=reason, failure_detail=detail)
    return row


class _LastWrite:
    """A file for csv.writer that keeps what it was last handed: one row's line."""

    line = ""

    def write(self, text: str) -> None:
        self.line = text


class _CsvLine(beam.DoFn):
    """A prediction row as one CSV line (spreadsheet-safe cells), through one writer per
    DoFn instance, made where it runs: a writer and a buffer per row cost as much again
    as the rest of the row's way to the file."""

    def setup(self):
        self._file = _LastWrite()
        self._writer = csv.writer(self._file, lineterminator="")

    def process(self, row: dict) -> list[str]:
        self._writer.writerow(spreadsheet.safe_row(row[field] for field in PREDICTION_FIELDS))
        return [self._file.line]


class ClassifyRows(beam.PTransform):
    """A books CSV -> {"rows": one prediction row per row taken (PREDICTION_FIELDS),
    "gallery": (category, its GALLERY_PER_CATEGORY most confident covers)}."""

    def __init__(self, csv_path: str, model_dir: str, version: str, settings: CatalogueSettings):
        super().__init__()
        self._csv_path, self._settings, self._model_dir = csv_path, settings, model_dir
        self._handler = KeyedModelHandler(
            CoverModelHandler(model_dir, version, settings.batch_size)
        )

    def expand(self, pbegin):
        settings = self._settings
        read = (
            pbegin
            | "CsvPath" >> beam.Create([self._csv_path])
            # The model loads on another core while this worker reads the file.
            | "LoadModelAhead" >> beam.Map(_loading_ahead, self._model_dir)
            | "ReadRows"
            >> beam.FlatMap(read_rows, settings.all_rows).with_outputs(
                READ_COUNTS, UNREADABLE, main="rows"
            )
        )
        counts = read[READ_COUNTS]
        covers_to_fetch = beam.pvalue.AsSingleton(
            counts | "CoversToFetch" >> beam.Map(lambda c: c["covers_to_fetch"])
        )
        # The file is read as one stream (row numbers follow its order); from here on
        # the rows with a cover to fetch (14,622 of the 48,624 taken in the full-size
        # stand-in) spread over every worker. The spread waits for the whole read, so
        # the counts it made are there when the first cover is fetched.
        downloads = (
            read.rows
            | "Spread" >> beam.Reshuffle()
            | "Download"
            # Its live progress (covers done of the total, rate, failures, ETA) is the
            # run's: each cover goes on to the model in the same fused stage.
            >> beam.ParDo(
                # The model decodes and resizes every image itself (serving_default).
                DownloadCoversFn(settings.fetch, settings.cache_dir, step=STEP, as_fetched=True),
                total=covers_to_fetch,
            ).with_outputs("failures", main="covers")
        )
        not_downloaded = downloads.failures | "DownloadFailed" >> beam.Map(
            lambda book: failed_row(book, book["reason"], book["detail"])
        )
        inferred = (
            downloads.covers
            | "Keyed" >> beam.Map(_keyed_cover)
            | "RunInference" >> RunInference(self._handler)
        )
        predicted = inferred | "Predicted" >> beam.Map(predicted_row)
        # Bounded per category whatever the catalogue's size: a combine, not a gather.
        gallery = (
            inferred
            | "Answered" >> beam.Filter(lambda item: "error" not in item[1].inference)
            | "ByCategory" >> beam.FlatMap(_gallery_entry, settings.fetch)
            | "MostConfident"
            >> beam.combiners.Top.PerKey(GALLERY_PER_CATEGORY, key=lambda entry: entry["score"])
        )
        rows = (read[UNREADABLE], not_downloaded, predicted) | "AllRows" >> beam.Flatten()
        return {"rows": rows, "gallery": gallery, READ_COUNTS: counts}


def _loading_ahead(csv_path: str, model_dir: str) -> str:
    load_ahead(model_dir)
    return csv_path


def _keyed_cover(cover: dict) -> tuple[dict, tuple[bytes, str]]:
    key = {name: cover[name] for name in ("row", "title", "image_url")}
    return key, (cover["cover"], cover["title"] or "")


def _stored_cover(image: bytes, fetch: FetchConfig) -> bytes | None:
    """The 100x150 cover the gallery shows of an image as fetched; None where Pillow
    refuses what the model's decoder took (such a cover is not shown)."""
    try:
        return to_cover_image(image, fetch)
    except CoverError:
        return None


def _gallery_entry(item: tuple[dict, object], fetch: FetchConfig) -> Iterator[tuple[str, dict]]:
    key, result = item
    image, stored = result.example, False
    if len(image) > GALLERY_MAX_IMAGE_BYTES:
        image, stored = _stored_cover(image, fetch), True
        if image is None:
            return
    score = result.inference["scores"][0]
    entry = {**key, "score": score, "cover": image, "stored": stored}
    yield result.inference["categories"][0], entry


def write_gallery(item: tuple[str, list[dict]], output_dir: str, fetch: FetchConfig) -> list[dict]:
    """Writes one category's covers to gallery/ as stored covers (the images came as
    fetched, any size; a large one was made a cover before the ranking, once); returns
    what the report shows of each."""
    category, entries = item
    shown = []
    suffix = ".png" if fetch.cover_format == "PNG" else ".jpg"
    for entry in entries:
        cover = entry["cover"] if entry["stored"] else _stored_cover(entry["cover"], fetch)
        if cover is None:
            continue
        name = f"{GALLERY_DIR}/row{entry['row']}{suffix}"
        with fileio.open(os.path.join(output_dir, name), "wb") as f:
            f.write(cover)
        kept = {k: v for k, v in entry.items() if k not in ("cover", "stored")}
        shown.append({**kept, "category": category, "file": name})
    return shown


class SummaryFn(beam.CombineFn):
    """Rows, classified, failed by reason and predicted categories, over all rows."""

    def create_accumulator(self) -> dict:
        return {"rows": 0, "failed": collections.Counter(), "predicted": collections.Counter()}

    def add_input(self, counts: dict, row: dict) -> dict:
        counts["rows"] += 1
        if row["failure_reason"]:
            counts["failed"][row["failure_reason"]] += 1
        else:
            counts["predicted"][row["category_1"]] += 1
        return counts

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for counts in accumulators:
            merged["rows"] += counts["rows"]
            merged["failed"].update(counts["failed"])
            merged["predicted"].update(counts["predicted"])
        return merged

    def extract_output(self, counts: dict) -> dict:
        return {
            "rows_done": counts["rows"],
            "classified": sum(counts["predicted"].values()),
            "failed": dict(counts["failed"].most_common()),
            "predicted_categories": dict(counts["predicted"].most_common()),
        }


def write_json(data: object, path: str) -> None:
    """Written whole or not at all: to a temporary name, then renamed."""
    staging = f"{path}.incomplete-{uuid.uuid4().hex}"
    with fileio.open(staging, "w") as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    fileio.rename(staging, path, overwrite=True)


class WriteOutputs(beam.PTransform):
    """ClassifyRows' outputs -> predictions.csv, the gallery, and the counts (a JSON file)."""

    def __init__(self, output_dir: str, counts_path: str, fetch: FetchConfig):
        super().__init__()
        self._output_dir, self._counts_path, self._fetch = output_dir, counts_path, fetch

    def expand(self, classified: dict):
        out = self._output_dir
        _ = (
            classified["gallery"]
            | "WriteGallery" >> beam.FlatMap(write_gallery, out, self._fetch)
            | "GalleryList" >> beam.combiners.ToList()
            | "WriteGalleryList" >> beam.Map(write_gallery_list, os.path.join(out, GALLERY_FILE))
        )
        _ = (
            classified["rows"]
            | "CsvLines" >> beam.ParDo(_CsvLine())
            | "WritePredictions"
            >> beam.io.WriteToText(
                os.path.join(out, PREDICTIONS_FILE),
                shard_name_template="",
                header=",".join(PREDICTION_FIELDS),
            )
        )
        return (
            classified["rows"]
            | "Summary" >> beam.CombineGlobally(SummaryFn())
            | "WriteCounts"
            >> beam.Map(
                lambda counts, read, path: write_json({**read, **counts}, path),
                read=beam.pvalue.AsSingleton(classified[READ_COUNTS]),
                path=self._counts_path,
            )
        )


def write_gallery_list(shown: list[dict], path: str) -> None:
    write_json(sorted(shown, key=lambda e: (e["category"], -e["score"])), path)


def classify_catalogue(
    csv_path: str,
    model: str,
    output_dir: str,
    settings: CatalogueSettings,
    beam_args: list[str] | None = None,
    version: str = "",
) -> dict:
    """Runs the catalogue pipeline; writes predictions.csv and summary.json to output_dir
    and returns the summary. `version` names the model in the predictions when its
    folder's name does not (a TFX artifact's)."""
    model_dir, folder_version = resolve_model(model)
    version = version or folder_version
    # Relative cover paths name files beside the CSV, as in ingestion.
    settings = dataclasses.replace(
        settings, fetch=dataclasses.replace(settings.fetch, base_dir=os.path.dirname(csv_path))
    )
    BookReader(csv_path).check_header()  # the rows themselves are read in the pipeline
    fileio.makedirs(os.path.join(output_dir, GALLERY_DIR))
    counts_path = os.path.join(output_dir, f".counts-{uuid.uuid4().hex}.json")
    started = time.time()
    with beam.Pipeline(argv=list(beam_args or constants.DIRECT_IN_PROCESS_ARGS)) as p:
        _ = (
            p
            | "Classify" >> ClassifyRows(csv_path, model_dir, version, settings)
            | "Write" >> WriteOutputs(output_dir, counts_path, settings.fetch)
        )
    seconds = time.time() - started
    with fileio.open(counts_path) as f:
        counts = json.load(f)
    fileio.remove(counts_path)
    summary = {
        "books_csv": csv_path,
        "model": model_dir,
        "model_version": version,
        "all_rows": settings.all_rows,
        **counts,
        "seconds": round(seconds, 1),
        "rows_per_second": round(counts["rows_done"] / seconds, 2) if seconds else 0.0,
        "predictions": os.path.join(output_dir, PREDICTIONS_FILE),
    }
    write_json(summary, os.path.join(output_dir, SUMMARY_FILE))
    return summary
