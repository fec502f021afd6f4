"""CoverExampleGen's Beam steps on real Beam: downloads, deduplication, splits, examples."""

import collections
import csv
import dataclasses
import io
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from tfx import v1 as tfx

from bookcover import constants
from components.cover_downloads import DownloadCoversFn
from components.cover_example_gen import CoverExampleGen, executor
from components.cover_example_gen.settings import IngestSettings
from tests import cover_server as cs
from tests import images

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

SPLITS = ("train", "eval", "test")


def cover(row, category, title, content_hash, authors=("A",)):
    return {
        "row": row,
        "title": title,
        "authors": list(authors),
        "category": category,
        "image_url": f"http://127.0.0.1/{row}.jpg",
        "cover": b"\xff\xd8" + content_hash.encode(),
        "content_hash": content_hash,
    }


def run_split(covers, out_dir, files=2):
    """Runs the real transforms, DedupeAndSplit then WriteSplitFiles, into `files` files
    per split; per example written, its split and (title, category, content hash)."""
    run = os.path.join(out_dir, f"run-{len(os.listdir(out_dir))}")
    staging = os.path.join(run, "staging")
    os.makedirs(staging)
    split_uris = {name: os.path.join(run, f"Split-{name}") for name in SPLITS}
    for split_uri in split_uris.values():
        os.makedirs(split_uri)
    with TestPipeline() as p:
        _ = (
            p
            | beam.Create(covers)
            | executor.DedupeAndSplit([3, 1, 1], list(SPLITS), 42, staging, files)
            | executor.WriteSplitFiles(split_uris, files, staging)
        )
    found = []
    for name, split_uri in split_uris.items():
        written = sorted(os.listdir(split_uri))
        assert len(written) <= files
        for path in written:
            dataset = tf.data.TFRecordDataset(os.path.join(split_uri, path), "GZIP")
            found += [(name, _fields(record.numpy())) for record in dataset]
    return found


def _fields(serialized: bytes) -> dict:
    feature = tf.train.Example.FromString(serialized).features.feature
    return {
        name: feature[key].bytes_list.value[0].decode()
        for name, key in (
            ("title", constants.TITLE_KEY),
            ("category", constants.CATEGORY_KEY),
            ("content_hash", constants.CONTENT_HASH_KEY),
        )
    }


def test_duplicates_are_dropped_and_each_category_is_split_60_20_20(tmp_path):
    covers = [cover(i, cat, f"{cat} {i}", f"{cat}-{i}") for cat in ("x", "y") for i in range(20)]
    covers.append(cover(99, "x", "x copy", "x-3"))  # same bytes as row 3 of x
    result = run_split(covers, tmp_path)
    assert len(result) == 40
    counts = collections.Counter((split, c["category"]) for split, c in result)
    for category in ("x", "y"):
        assert [counts[(s, category)] for s in ("train", "eval", "test")] == [12, 4, 4]
    kept = [c for _, c in result if c["content_hash"] == "x-3"]
    assert [c["title"] for c in kept] == ["x 3"]  # the first row wins, deterministically


def test_covers_of_one_book_share_a_split_and_splits_are_deterministic(tmp_path):
    covers = [cover(i, "x", f"Book {i // 3}", f"h{i}") for i in range(30)]  # 10 books x 3
    first = run_split(covers, tmp_path)
    splits_by_book = collections.defaultdict(set)
    for split, c in first:
        splits_by_book[c["title"]].add(split)
    assert all(len(s) == 1 for s in splits_by_book.values())
    again = run_split(covers, tmp_path)
    assert sorted((s, c["content_hash"]) for s, c in first) == sorted(
        (s, c["content_hash"]) for s, c in again
    )


def test_example_holds_image_label_title_url_and_hash():
    example = tf.train.Example.FromString(executor.to_example(cover(5, "Art", "T", "abc")))
    feature = example.features.feature
    assert feature["image"].bytes_list.value[0] == b"\xff\xd8abc"
    assert feature["category"].bytes_list.value[0] == b"Art"
    assert feature["title"].bytes_list.value[0] == b"T"
    assert feature["source_url"].bytes_list.value[0] == b"http://127.0.0.1/5.jpg"
    assert feature["content_hash"].bytes_list.value[0] == b"abc"


def test_failure_lines_are_valid_csv_even_with_commas_and_quotes():
    line = executor.failure_line(
        {
            "row": 7,
            "category": "Art, Design",
            "image_url": "http://x/a",
            "reason": "not_an_image",
            "detail": 'said "no", twice',
        }
    )
    assert next(csv.reader(io.StringIO(line))) == [
        "7",
        "Art, Design",
        "http://x/a",
        "not_an_image",
        'said "no", twice',
    ]


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_download_streams_every_cover_out_under_either_direct_runner_mode(server, tmp_path, mode):
    # Two connections allow 8 covers in flight, so 30 books leave through both
    # process() (when the window is full) and finish_bundle() (the rest).
    for i in range(27):
        server.routes[f"/c{i}.jpg"] = cs.send_bytes(images.jpeg(color=(8 * i, 40, 200)))
    books = [
        {"row": i, "category": "x", "title": f"T{i}", "authors": ["A"], "image_url": url}
        for i, url in enumerate([f"{server.url}/c{i}.jpg" for i in range(27)])
    ]
    books += [
        {"row": 100 + i, "category": "x", "title": "gone", "authors": [], "image_url": url}
        for i, url in enumerate(f"{server.url}/missing{i}.jpg" for i in range(3))
    ]
    fetch = dataclasses.replace(cs.FAST_FETCH, connections=2)
    prefix = str(tmp_path / "out")
    args = [f"--direct_running_mode={mode}", "--direct_num_workers=2"]
    with beam.Pipeline(argv=args) as p:
        result = (
            p
            | beam.Create(books)
            | beam.ParDo(DownloadCoversFn(fetch)).with_outputs("failures", main="covers")
        )
        covers_out = result.covers | "Covers" >> beam.Map(lambda c: f"ok,{c['row']}")
        failures_out = result.failures | "Failures" >> beam.Map(
            lambda f: f"{f['reason']},{f['row']}"
        )
        _ = (
            (covers_out, failures_out)
            | beam.Flatten()
            | beam.io.WriteToText(prefix, shard_name_template="")
        )
    with open(prefix) as f:
        lines = sorted(f.read().split())
    assert lines == sorted(
        [f"ok,{i}" for i in range(27)] + [f"http_404,{100 + i}" for i in range(3)]
    )
    assert all(server.requests[f"/c{i}.jpg"] == 1 for i in range(27))


def test_example_gen_runs_in_process_on_the_direct_runner_whatever_the_pipeline_says(tmp_path):
    example_gen = CoverExampleGen(input_base=str(tmp_path), settings=IngestSettings())
    _ = tfx.dsl.Pipeline(
        pipeline_name="args",
        pipeline_root=str(tmp_path),
        components=[example_gen],
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    options = PipelineOptions(example_gen.executor_spec.beam_pipeline_args).view_as(DirectOptions)
    assert options.direct_running_mode == "in_memory"
    assert options.direct_num_workers == 1
