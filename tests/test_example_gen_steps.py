"""CoverExampleGen's Beam steps on real Beam: deduplication, splitting, examples, failures."""

import collections
import csv
import io
import json
import os

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from components.cover_example_gen import executor


def cover(row, category, title, content_hash, authors=("A",)):
    return {
        "row": row,
        "title": title,
        "authors": list(authors),
        "category": category,
        "image_url": f"http://127.0.0.1/{row}.jpg",
        "jpeg": b"\xff\xd8" + content_hash.encode(),
        "content_hash": content_hash,
    }


def run_split(covers, out_dir):
    """Runs the real transform; results come back through a file, as from Beam workers."""
    prefix = os.path.join(out_dir, f"split-{len(os.listdir(out_dir))}")
    with TestPipeline() as p:
        _ = (
            p
            | beam.Create(covers)
            | executor.DedupeAndSplit([3, 1, 1], ["train", "eval", "test"], seed=42)
            | beam.Map(lambda kv: json.dumps([kv[0], {**kv[1], "jpeg": ""}]))
            | beam.io.WriteToText(prefix, shard_name_template="")
        )
    with open(prefix) as f:
        return [tuple(json.loads(line)) for line in f]


def test_duplicates_are_dropped_and_each_category_is_split_60_20_20(tmp_path):
    covers = [cover(i, cat, f"{cat} {i}", f"{cat}-{i}") for cat in ("x", "y") for i in range(20)]
    covers.append(cover(99, "x", "x copy", "x-3"))  # same bytes as row 3 of x
    result = run_split(covers, tmp_path)
    assert len(result) == 40
    counts = collections.Counter((split, c["category"]) for split, c in result)
    for category in ("x", "y"):
        assert [counts[(s, category)] for s in ("train", "eval", "test")] == [12, 4, 4]
    kept = [c for _, c in result if c["content_hash"] == "x-3"]
    assert [c["row"] for c in kept] == [3]  # the first row wins, deterministically


def test_covers_of_one_book_share_a_split_and_splits_are_deterministic(tmp_path):
    covers = [cover(i, "x", f"Book {i // 3}", f"h{i}") for i in range(30)]  # 10 books x 3
    first = run_split(covers, tmp_path)
    splits_by_book = collections.defaultdict(set)
    for split, c in first:
        splits_by_book[c["title"]].add(split)
    assert all(len(s) == 1 for s in splits_by_book.values())
    again = run_split(covers, tmp_path)
    assert sorted((s, c["row"]) for s, c in first) == sorted((s, c["row"]) for s, c in again)


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
