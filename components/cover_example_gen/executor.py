"""Executor of CoverExampleGen: read, analyse, select, download, deduplicate and split."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import uuid
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor, write_split
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from bookcover import constants, memory, spreadsheet
from components import splits
from components.cover_downloads import DownloadCoversFn
from components.cover_example_gen import analysis
from components.cover_example_gen.settings import IngestSettings

METRICS_NAMESPACE = "CoverExampleGen"
FAILURES_FILE = "failures.csv"
# Covers wait here, as their examples, while the splits are decided (DedupeAndSplit).
STAGING_DIR = ".staging"
FAILURE_FIELDS = ("row", "category", "url", "reason", "detail")
# Each split is written as ceil(selected / COVERS_PER_FILE) files, a cover to file
# row % files, each file in row order: the same files at every run, whatever order the
# downloads finish in, and one index's files (about 32 MB of examples, all splits
# together) are all a worker holds.
COVERS_PER_FILE = 4096
# TFRecord framing around each record: its length (8 bytes) and that length's CRC (4)
# before, the data's CRC (4) after.
TFRECORD_HEADER_BYTES = 12
TFRECORD_FRAMING_BYTES = 16


# The group of the covers kept for pretraining (no category can be named so: the CSV
# reader refuses NUL bytes).
PRETRAIN_GROUP = "\0pretrain"


def _identity(cover: dict) -> tuple[str, tuple]:
    """content hash -> what deduplication and splitting need of a cover, without its bytes."""
    book = splits.book_key(cover["title"], cover["authors"])
    pretrain = bool(cover.get("pretrain"))
    return cover["content_hash"], (
        pretrain,
        cover["row"],
        cover["image_url"],
        cover["category"],
        book,
    )


def _keep_first_by_hash(item: tuple[str, list[tuple]]) -> tuple[str, tuple]:
    """(category, or PRETRAIN_GROUP, (book, content hash, row, category)) of the cover a
    content hash keeps: a selected book's before a pretraining one's, then the first row."""
    content_hash, group = item
    group = list(group)
    pretrain, row, _, category, book = min(group)
    if len(group) > 1:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped").inc(len(group) - 1)
    return PRETRAIN_GROUP if pretrain else category, (book, content_hash, row, category)


class AssignSplitsFn(beam.DoFn):
    """Per category: orders books stably and fills train/eval/test to their shares;
    tagged `held_out`, each book of a split other than train.

    It sees (book, content hash, row) of each cover of the category, never the
    cover itself: a large category costs one worker a few bytes per cover.
    """

    def __init__(self, buckets: list[int], split_names: list[str], seed: int):
        self._buckets = buckets
        self._split_names = split_names
        self._seed = seed

    def process(self, item: tuple[str, list[tuple]]):
        category, covers = item
        books: dict[str, list[tuple]] = {}
        for book, content_hash, row, _ in covers:
            books.setdefault(book, []).append((content_hash, row))
        keys = sorted(books, key=lambda k: splits.stable_order(k, self._seed))
        assignment = splits.assign_groups([len(books[k]) for k in keys], self._buckets)
        for key, split_index in zip(keys, assignment, strict=True):
            split = self._split_names[split_index]
            if split != constants.SPLIT_NAMES[0]:  # pretraining sees no book but train's
                yield beam.pvalue.TaggedOutput("held_out", key)
            for content_hash, row in sorted(books[key]):
                beam.metrics.Metrics.counter(
                    METRICS_NAMESPACE, f"examples/{split}/{category}"
                ).inc()
                yield (row, content_hash), split


class PretrainingFn(beam.DoFn):
    """The covers kept for pretraining, but for any of a book of eval or test (the
    side input): no cover of a held-out book is seen before it is scored."""

    def process(self, cover: tuple, held_out: list[str]):
        book, content_hash, row, category = cover
        if book in self._held_out(held_out):
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, "pretrain_held_out_dropped").inc()
            return
        split = constants.PRETRAIN_SPLIT
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"examples/{split}/{category}").inc()
        yield (row, content_hash), split

    def _held_out(self, held_out: list[str]) -> set[str]:
        if getattr(self, "_source", None) is not held_out:  # once per side input
            self._source, self._set = held_out, set(held_out)
        return self._set


def _by_group(item: tuple[str, tuple]):
    group, cover = item
    if group == PRETRAIN_GROUP:
        yield beam.pvalue.TaggedOutput("pretrain", cover)
    else:
        yield group, cover


def _placed_records(item: tuple[tuple, dict]):
    """(split, (row, staging file, offset, length)) of a cover that was given a split;
    a duplicate was given none."""
    (row, _), joined = item
    for split in joined["split"]:
        for path, offset, length in joined["staged"]:
            yield split, (row, path, offset, length)


class StageCoversFn(beam.DoFn):
    """Writes each cover, as its finished tf.Example, to its bundle's staging file for
    the split file it will go to (row % files), and passes on only what deduplication
    and splitting need, with where the example waits: no shuffle carries a cover's
    bytes, on any runner, and each split file's writer reads only its own staging files."""

    def __init__(self, staging_dir: str, files: int):
        self._staging_dir = staging_dir
        self._files = files

    def start_bundle(self):
        self._staged: dict[int, list] = {}  # file index -> [writer, path, offset]

    def process(self, cover: dict):
        index = cover["row"] % self._files
        if index not in self._staged:
            path = os.path.join(self._staging_dir, f"{index:05d}-{uuid.uuid4().hex}.tfrecord")
            self._staged[index] = [tf.io.TFRecordWriter(path), path, 0]
        staged = self._staged[index]
        writer, path, offset = staged
        example = to_example(cover)
        writer.write(example)
        yield _identity(cover)
        where = (path, offset + TFRECORD_HEADER_BYTES, len(example))
        yield beam.pvalue.TaggedOutput("staged", ((cover["row"], cover["content_hash"]), where))
        staged[2] = offset + len(example) + TFRECORD_FRAMING_BYTES

    def finish_bundle(self):
        # Before the bundle's outputs count: nothing reads the files until then.
        for writer, _, _ in self._staged.values():
            writer.close()


class DedupeAndSplit(beam.PTransform):
    """Covers -> (split name, (row, staging file, offset, length)), where each kept
    cover's serialized tf.Example waits: one cover per content hash, stratified by
    category; covers marked `pretrain` to constants.PRETRAIN_SPLIT, but for those of
    a book that eval or test holds.

    Each cover is written to a staging file as it arrives (StageCoversFn).
    Deduplication and the split assignment run on keys and hashes. No step gathers
    covers' bytes: not a category's on one worker, and not all of them in the
    DirectRunner's memory.
    """

    def __init__(
        self, buckets: list[int], split_names: list[str], seed: int, staging_dir: str, files: int
    ):
        super().__init__()
        self._assign = AssignSplitsFn(buckets, split_names, seed)
        self._stage = StageCoversFn(staging_dir, files)

    def expand(self, covers_pcoll):
        staged = covers_pcoll | "Stage" >> beam.ParDo(self._stage).with_outputs(
            "staged", main="identities"
        )
        kept = (
            staged.identities
            | "GroupHash" >> beam.GroupByKey()
            | "Dedupe" >> beam.Map(_keep_first_by_hash)
            | "ByGroup" >> beam.FlatMap(_by_group).with_outputs("pretrain", main="selected")
        )
        assigned = (
            kept.selected
            | "GroupCategory" >> beam.GroupByKey()
            | "AssignSplits" >> beam.ParDo(self._assign).with_outputs("held_out", main="split")
        )
        pretraining = kept.pretrain | "Pretraining" >> beam.ParDo(
            PretrainingFn(), held_out=beam.pvalue.AsList(assigned.held_out)
        )
        placed = (assigned.split, pretraining) | "AllSplits" >> beam.Flatten()
        return (
            {"split": placed, "staged": staged.staged}
            | "Join" >> beam.CoGroupByKey()
            | "Placed" >> beam.FlatMap(_placed_records)
        )


class WriteSplitFilesFn(beam.DoFn):
    """(file index, covers placed there) -> that file of every split, its covers in row
    order, read from the index's staging files (each read forward once); each written
    aside, then renamed in (a retried bundle writes them whole again)."""

    def __init__(self, split_uris: dict[str, str], files: int, staging_dir: str):
        self._split_uris = split_uris
        self._files = files
        self._staging_dir = staging_dir

    def process(self, item: tuple[int, list[tuple]]):
        index, placed = item
        by_split: dict[str, list[tuple[int, bytes]]] = {split: [] for split in self._split_uris}
        for path, in_file in itertools.groupby(sorted(placed, key=_where), key=_staging_file):
            with fileio.open(path, "rb") as staged:
                for split, row, _, offset, length in in_file:
                    staged.seek(offset)
                    by_split[split].append((row, staged.read(length)))
        for split, examples in by_split.items():
            examples.sort(key=lambda found: found[0])
            written = os.path.join(self._staging_dir, f"{uuid.uuid4().hex}.gz")
            with tf.io.TFRecordWriter(written, options="GZIP") as writer:
                for _, example in examples:
                    writer.write(example)
            final = split_file(self._split_uris[split], index, self._files)
            fileio.rename(written, final, overwrite=True)
            yield final


class WriteSplitFiles(beam.PTransform):
    """DedupeAndSplit's output -> each split's `files` files (WriteSplitFilesFn), a
    cover to file row % files; the split directories must exist."""

    def __init__(self, split_uris: dict[str, str], files: int, staging_dir: str):
        super().__init__()
        self._write = WriteSplitFilesFn(split_uris, files, staging_dir)
        self._files = files

    def expand(self, split_covers):
        files = self._files
        return (
            split_covers
            | "ByFile" >> beam.Map(lambda kv: (kv[1][0] % files, (kv[0], *kv[1])))
            | "GroupByFile" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(self._write)
        )


def _where(placed: tuple) -> tuple[str, int]:
    return placed[2], placed[3]


def _staging_file(placed: tuple) -> str:
    return placed[2]


def split_file(split_uri: str, index: int, files: int) -> str:
    """One of a split's files, named as Beam names its shards."""
    name = write_split.DEFAULT_TF_RECORD_FILE_NAME
    return os.path.join(split_uri, f"{name}-{index:05d}-of-{files:05d}.gz")


def split_file_count(selected: int) -> int:
    return max(1, math.ceil(selected / COVERS_PER_FILE))


def to_example(cover: dict) -> bytes:
    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        constants.IMAGE_KEY: bytes_feature(cover["cover"]),
        constants.CATEGORY_KEY: bytes_feature(cover["category"].encode("utf-8")),
        constants.TITLE_KEY: bytes_feature(cover["title"].encode("utf-8")),
        constants.SOURCE_URL_KEY: bytes_feature(cover["image_url"].encode("utf-8")),
        constants.CONTENT_HASH_KEY: bytes_feature(cover["content_hash"].encode("ascii")),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)


def _write_empty_split_files(split_uris: dict[str, str], files: int) -> None:
    """Every split holds its `files` files, those that no cover fell to empty: a split
    that kept no cover is there, and readers see the numbering complete."""
    for split_uri in split_uris.values():
        for index in range(files):
            path = split_file(split_uri, index, files)
            if not fileio.exists(path):
                with tf.io.TFRecordWriter(path, options="GZIP"):
                    pass


def written_splits(split_names: list[str], settings: IngestSettings) -> list[str]:
    """The splits the examples artifact holds: the configured ones, and the pretraining
    split when asked for."""
    return split_names + [constants.PRETRAIN_SPLIT] * settings.pretrain


def failure_line(failure: dict) -> str:
    """One row of failures.csv, safe to open in a spreadsheet (URLs come from the CSV)."""
    out = io.StringIO()
    csv.writer(out).writerow(
        spreadsheet.safe_row(
            [
                failure["row"],
                failure["category"],
                failure["image_url"],
                failure["reason"],
                failure["detail"][:500],
            ]
        )
    )
    return out.getvalue().rstrip("\r\n")


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Custom ExampleGen executor: selects on the driver in two streaming passes over the
    CSV (memory holds the selection, not the file), downloads and splits with Beam."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        # Splitting is stratified and book-aware, so GenerateExamplesByBeam is ours.
        raise NotImplementedError("CoverExampleGen builds its splits in Do")

    def Do(  # noqa: N802 - TFX API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = IngestSettings.from_dict(json.loads(exec_properties["ingest_settings"]))
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
        )
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
        )
        split_names = example_gen_utils.generate_output_split_names(input_config, output_config)
        buckets = [s.hash_buckets for s in output_config.split_config.splits]
        written = written_splits(split_names, settings)

        csv_path = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern
        )
        # Relative cover paths name files beside the CSV, wherever the run started.
        settings = dataclasses.replace(
            settings,
            fetch=dataclasses.replace(settings.fetch, base_dir=os.path.dirname(csv_path)),
        )
        analysis_dir = artifact_utils.get_single_uri(output_dict["category_analysis"])
        selected = analysis.analyse_and_select(csv_path, settings, analysis_dir)
        selection_file = os.path.join(analysis_dir, analysis.SELECTION_FILE)

        examples_artifact = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        examples_artifact.split_names = artifact_utils.encode_split_names(written)
        result = self._run_beam(
            selection_file,
            selected,
            settings,
            split_names,
            buckets,
            examples_artifact.uri,
            output_dict[standard_component_specs.EXAMPLES_KEY],
        )
        counts = analysis.ingest_counts(result.metrics(), METRICS_NAMESPACE, selected)
        analysis.write_ingest_summary(analysis_dir, counts)
        del result
        memory.return_freed_memory()
        for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
            artifact.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
            artifact.set_string_custom_property("file_format", "tfrecords_gzip")
        share = counts["failed"] / max(selected, 1)
        if share > settings.max_failure_share:
            raise RuntimeError(
                f"{counts['failed']} of {selected} covers ({share:.0%}) failed, over the "
                f"allowed {settings.max_failure_share:.0%}; reasons {counts['failed_by_reason']}; "
                f"see {os.path.join(examples_artifact.uri, FAILURES_FILE)}"
            )
        logging.info("CoverExampleGen: %s", json.dumps(counts))

    def _run_beam(
        self, selection_file, selected, settings, split_names, buckets, examples_uri, examples
    ):
        pipeline = self._make_beam_pipeline()
        downloaded = (
            pipeline
            | "Books" >> beam.io.ReadFromText(selection_file)
            | "Parse" >> beam.Map(json.loads)
            | "Spread" >> beam.Reshuffle()
            | "Download"
            >> beam.ParDo(
                DownloadCoversFn(settings.fetch, settings.cache_dir, selected)
            ).with_outputs("failures", main="covers")
        )
        _ = (
            downloaded.failures
            | "FailureLines" >> beam.Map(failure_line)
            | "WriteFailures"
            >> beam.io.WriteToText(
                os.path.join(examples_uri, FAILURES_FILE),
                shard_name_template="",
                header=",".join(FAILURE_FIELDS),
            )
        )
        staging_dir = os.path.join(examples_uri, STAGING_DIR)
        fileio.makedirs(staging_dir)
        files = split_file_count(selected)
        split_covers = downloaded.covers | "DedupeAndSplit" >> DedupeAndSplit(
            buckets, split_names, settings.seed, staging_dir, files
        )
        split_uris = {
            name: artifact_utils.get_split_uri(examples, name)
            for name in written_splits(split_names, settings)
        }
        for split_uri in split_uris.values():
            fileio.makedirs(split_uri)  # where WriteSplitFilesFn renames its files to
        _ = split_covers | "WriteSplitFiles" >> WriteSplitFiles(split_uris, files, staging_dir)
        result = pipeline.run()
        result.wait_until_finish()
        fileio.rmtree(staging_dir)
        _write_empty_split_files(split_uris, files)
        return result
