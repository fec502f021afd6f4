"""Executor of CoverExampleGen: read, analyse, select, download, deduplicate and split."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
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
# Up to this many covers selected, each split is written in the CSV's row order
# (gathered in memory); above it, in the order the downloads finish.
ORDERED_WRITE_MAX_COVERS = 5000


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


def _by_staged_file(item: tuple[tuple, dict]):
    """(staging file, (record index, (split, row))) for a cover that was given a split;
    a duplicate was given none."""
    (row, _), joined = item
    for split in joined["split"]:
        for path, index in joined["staged"]:
            yield path, (index, (split, row))


def _read_placed(item: tuple[str, list[tuple]]):
    """(split, (row, example)) for each record of one staging file given a split."""
    path, placed = item
    wanted = {index: (split, row) for index, (split, row) in placed}
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        if index in wanted:
            split, row = wanted[index]
            yield split, (row, record.numpy())


def _in_row_order(examples: list[tuple[int, bytes]]) -> list[bytes]:
    return [example for _, example in sorted(examples, key=lambda placed: placed[0])]


class StageCoversFn(beam.DoFn):
    """Writes each cover, as its finished tf.Example, to its bundle's staging file, and
    passes on only what deduplication and splitting need, with where the example waits:
    no shuffle carries a cover's bytes, on any runner."""

    def __init__(self, staging_dir: str):
        self._staging_dir = staging_dir

    def start_bundle(self):
        self._writer, self._path, self._written = None, "", 0

    def process(self, cover: dict):
        if self._writer is None:
            self._path = os.path.join(self._staging_dir, f"{uuid.uuid4().hex}.tfrecord")
            self._writer = tf.io.TFRecordWriter(self._path)
        self._writer.write(to_example(cover))
        yield _identity(cover)
        yield beam.pvalue.TaggedOutput(
            "staged", ((cover["row"], cover["content_hash"]), (self._path, self._written))
        )
        self._written += 1

    def finish_bundle(self):
        # Before the bundle's outputs count: nothing reads the file until then.
        if self._writer is not None:
            self._writer.close()


class DedupeAndSplit(beam.PTransform):
    """Covers -> (split name, (row, serialized tf.Example)): one cover per content
    hash, stratified by category; covers marked `pretrain` to constants.PRETRAIN_SPLIT,
    but for those of a book that eval or test holds.

    Each cover is written to a staging file as it arrives (StageCoversFn).
    Deduplication and the split assignment run on keys and hashes; each staging file
    then learns which of its records go to which split, and is read back once. No
    step gathers covers' bytes: not a category's on one worker, and not all of them
    in the DirectRunner's memory.
    """

    def __init__(self, buckets: list[int], split_names: list[str], seed: int, staging_dir: str):
        super().__init__()
        self._assign = AssignSplitsFn(buckets, split_names, seed)
        self._stage = StageCoversFn(staging_dir)

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
            | "ByStagedFile" >> beam.FlatMap(_by_staged_file)
            | "GroupStagedFile" >> beam.GroupByKey()
            | "ReadPlaced" >> beam.FlatMap(_read_placed)
        )


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
        split_covers = downloaded.covers | "DedupeAndSplit" >> DedupeAndSplit(
            buckets, split_names, settings.seed, staging_dir
        )
        for name in written_splits(split_names, settings):
            placed = split_covers | f"Only[{name}]" >> beam.Filter(lambda kv, n=name: kv[0] == n)
            if selected <= ORDERED_WRITE_MAX_COVERS:
                # In the CSV's row order, not the order the downloads finished: the
                # same examples in the same order at every run, so that a seeded
                # Tuner and Trainer train alike (a small split fits in memory).
                split_examples = (
                    placed
                    | f"Gather[{name}]" >> beam.combiners.ToList()
                    | f"InRowOrder[{name}]"
                    >> beam.FlatMap(lambda found: _in_row_order([kv[1] for kv in found]))
                )
            else:  # already shuffled, as the downloads finished
                split_examples = placed | f"Example[{name}]" >> beam.Map(lambda kv: kv[1][1])
            _ = (
                split_examples
                # As TFX's WriteSplit writes them, without its Reshuffle: that would
                # hold every example in the DirectRunner's memory.
                | f"WriteSplit[{name}]"
                >> beam.io.WriteToTFRecord(
                    os.path.join(
                        artifact_utils.get_split_uri(examples, name),
                        write_split.DEFAULT_TF_RECORD_FILE_NAME,
                    ),
                    file_name_suffix=".gz",
                )
            )
        result = pipeline.run()
        result.wait_until_finish()
        fileio.rmtree(staging_dir)
        return result
