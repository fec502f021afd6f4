"""The real CoverExampleGen component against a misbehaving HTTP server on 127.0.0.1."""

import collections
import csv
import dataclasses
import glob
import gzip
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx import v1 as tfx

from bookcover import downloader
from components.cover_example_gen import CoverExampleGen, executor
from components.cover_example_gen.settings import IngestSettings
from pipeline import embedded_data
from tests import cover_server as cs
from tests import images

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

FETCH = cs.FAST_FETCH
# path -> (handler, expected outcome: "stored" or a failure reason)
CASES = {
    "/404.jpg": (cs.send_status(404), "http_404"),
    "/flaky.jpg": (cs.fail_then(cs.send_status(500), cs.send_bytes(images.jpeg())), "stored"),
    "/busy.jpg": (
        cs.fail_then(
            cs.send_status(429, {"Retry-After": "1"}), cs.send_bytes(images.jpeg(color=(1, 2, 3)))
        ),
        "stored",
    ),
    "/slow.jpg": (cs.slow(1.5, cs.send_bytes(images.jpeg())), "timeout"),
    "/truncated.jpg": (cs.send_bytes(images.jpeg()[:300]), "not_an_image"),
    "/page.html": (cs.send_bytes(b"<html>moved</html>", "text/html"), "not_an_image"),
    "/cover.png": (cs.send_bytes(images.png()), "stored"),
    "/gray.jpg": (cs.send_bytes(images.jpeg(mode="L", color=90)), "stored"),
    "/cmyk.jpg": (cs.send_bytes(images.jpeg(mode="CMYK", color=(0, 50, 90, 0))), "stored"),
    "/huge.bin": (cs.send_bytes(b"\xff" * 200_000), "too_large"),
    "/bomb.png": (cs.send_bytes(images.bomb_png()), "decompression_bomb"),
    "/moved.jpg": (cs.redirect("/target.jpg"), "stored"),
}


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=embedded_data.CSV_COLUMNS)
        writer.writeheader()
        for title, url, category in rows:
            writer.writerow(
                {"Title": title, "authors": "['A']", "image": url, "categories": repr([category])}
            )


def run_example_gen(csv_path, root, settings):
    example_gen = CoverExampleGen(
        input_base=os.path.dirname(csv_path), settings=settings, csv_name=os.path.basename(csv_path)
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="example_gen_test",
        pipeline_root=str(root / "root"),
        components=[example_gen],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    (analysis_dir,) = glob.glob(str(root / "root/CoverExampleGen/category_analysis/*"))
    with open(os.path.join(analysis_dir, "ingest_summary.json")) as f:
        return json.load(f)


def stored_examples(root):
    examples = []
    for path in glob.glob(str(root / "root/CoverExampleGen/examples/*/Split-*/*.gz")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            examples.append(tf.train.Example.FromString(record.numpy()))
    return examples


def test_every_misbehaviour_ends_as_expected_and_the_cache_serves_the_rerun(server, tmp_path):
    server.routes.update({path: handler for path, (handler, _) in CASES.items()})
    server.routes["/target.jpg"] = cs.send_bytes(images.jpeg(color=(9, 9, 200)))
    good = [(f"Good {i}", f"/good{i}.jpg", "Good") for i in range(40)]
    for i, (_, path, _) in enumerate(good):
        server.routes[path] = cs.send_bytes(images.jpeg(color=(6 * i, 100, 250 - 6 * i)))
    rows = [(f"Case {p}", server.url + p, "Cases") for p in CASES]
    rows += [(t, server.url + p, c) for t, p, c in good]
    write_csv(tmp_path / "books_data.csv", rows)
    settings = IngestSettings(
        top_k=2,
        per_class=None,
        balance=False,
        max_failure_share=0.5,
        cache_dir=str(tmp_path / "cache"),
        fetch=FETCH,
    )

    counts = run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "first", settings)

    expected_failures = sorted(r for _, r in CASES.values() if r != "stored")
    got_failures = sorted(r for r, n in counts["failed_by_reason"].items() for _ in range(n))
    assert got_failures == expected_failures
    stored = sum(n for split in counts["examples"].values() for n in split.values())
    assert stored == 40 + sum(r == "stored" for _, r in CASES.values())
    assert counts["duplicates_dropped"] == 0
    # The stage waits out busy.jpg's Retry-After of 1 s, so it spans at least that.
    assert counts["download_stage_seconds"] >= 1.0
    assert counts["download_stage_covers_per_s"] == pytest.approx(
        (counts["downloaded"] + counts["cached"]) / counts["download_stage_seconds"], rel=0.01
    )
    assert server.requests["/flaky.jpg"] == 2 and server.requests["/busy.jpg"] == 2
    assert server.requests["/404.jpg"] == 1  # 4xx is never retried
    examples = stored_examples(tmp_path / "first")
    assert len(examples) == stored
    for example in examples:
        image = tf.io.decode_jpeg(example.features.feature["image"].bytes_list.value[0])
        assert image.shape == (150, 100, 3)
    (failures_csv,) = glob.glob(
        str(tmp_path / "first/root/CoverExampleGen/examples/*/failures.csv")
    )
    with open(failures_csv) as f:
        assert sorted(r["reason"] for r in csv.DictReader(f)) == expected_failures

    # A power cut's leftovers: one entry truncated, one empty. Both are downloaded again.
    cache = downloader.CoverCache(str(tmp_path / "cache"))
    for path, keep in (("/good0.jpg", 100), ("/good1.jpg", 0)):
        entry = cache._path(server.url + path)
        with open(entry, "r+b") as f:
            f.truncate(keep)
    before = dict(server.requests)
    rerun = run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "second", settings)
    stored_paths = [p for p, (_, r) in CASES.items() if r == "stored"] + [p for _, p, _ in good]
    again = {p for p in stored_paths if server.requests[p] != before[p]}
    assert again == {"/good0.jpg", "/good1.jpg"}, "cache missed, or served a broken entry"
    assert rerun["cache_entries_dropped"] == 2
    assert (rerun["downloaded"], rerun["cached"]) == (2, stored - 2)


def split_records(root) -> dict[str, list[bytes]]:
    """Split -> its records, file after file."""
    return {
        split: [record for name in sorted(files) for record in files[name]]
        for split, files in split_files(root).items()
    }


def test_splits_are_the_same_files_in_row_order_whatever_order_downloads_finish(
    server, tmp_path, monkeypatch
):
    rows = []
    for i in range(30):  # later rows answer sooner: the downloads finish in reverse
        path = f"/r{i}.jpg"
        server.routes[path] = cs.slow(
            0.02 * (30 - i), cs.send_bytes(images.jpeg(color=(8 * i, 9, 9)))
        )
        rows.append((f"Book {i:02d}", server.url + path, "Even" if i % 2 == 0 else "Odd"))
    write_csv(tmp_path / "books_data.csv", rows)
    # Files of 4 covers at most: the 30 covers go to 8 files per split (a large
    # selection's shape, where no worker holds a whole split).
    monkeypatch.setattr(executor, "COVERS_PER_FILE", 4)
    # A read timeout well above the slowest answer (0.6 s): FETCH's 0.5 s timed some
    # of them out, a different few from run to run on a busy machine.
    fetch = dataclasses.replace(FETCH, read_timeout_s=5.0)
    settings = IngestSettings(top_k=2, per_class=None, balance=False, fetch=fetch)
    run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "first", settings)
    first = split_files(tmp_path / "first")
    for split, files in first.items():
        assert sorted(files) == [f"data_tfrecord-{i:05d}-of-00008.gz" for i in range(8)], split
    rows_of = {
        split: {name: [row_of(r) for r in records] for name, records in files.items()}
        for split, files in first.items()
    }
    assert sorted(r for files in rows_of.values() for f in files.values() for r in f) == list(
        range(1, 31)
    )  # every cover kept, once
    for files in rows_of.values():
        for name, rows_in_file in files.items():
            index = int(name.split("-")[1])
            assert rows_in_file == sorted(rows_in_file)
            assert all(row % 8 == index for row in rows_in_file)
    # The same files, byte for byte, at every run: a seeded Tuner and Trainer train alike.
    run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "second", settings)
    assert split_files(tmp_path / "second", raw=True) == split_files(tmp_path / "first", raw=True)


def split_files(root, raw: bool = False) -> dict[str, dict]:
    """Split -> file name -> its records (or, raw, its bytes)."""
    found = {}
    for split_dir in glob.glob(str(root / "root/CoverExampleGen/examples/*/Split-*")):
        found[os.path.basename(split_dir)] = {
            path.name: (
                path.read_bytes()
                if raw
                else [
                    r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")
                ]
            )
            for path in pathlib.Path(split_dir).glob("*")
        }
    return found


def row_of(record: bytes) -> int:
    """The CSV row (1-based) of an example of this test: its title is "Book NN", row NN + 1."""
    title = tf.train.Example.FromString(record).features.feature["title"].bytes_list.value[0]
    return int(title.decode().split()[1]) + 1


def test_too_many_failures_stop_the_run_with_a_clear_message(server, tmp_path):
    server.routes.update({f"/ok{i}.jpg": cs.send_bytes(images.jpeg()) for i in range(6)})
    rows = [(f"Ok {i}", f"{server.url}/ok{i}.jpg", "A" if i % 2 else "B") for i in range(6)]
    rows += [(f"Gone {i}", f"{server.url}/gone{i}.jpg", "A" if i % 2 else "B") for i in range(4)]
    write_csv(tmp_path / "books_data.csv", rows)
    settings = IngestSettings(top_k=2, per_class=None, balance=False, fetch=FETCH)
    with pytest.raises(Exception, match=r"4 of 10 covers \(40%\) failed, over the allowed 20%"):
        run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "run", settings)


def test_hostile_csv_rows_and_servers_end_as_counts_and_every_good_cover_is_kept(server, tmp_path):
    """A spreadsheet's CSV (BOM, a NUL byte, a nesting bomb) and hostile hosts (one that
    drips bytes forever, a redirect whose body is a gzip bomb, a WebP cover)."""
    good = [(f"Good {i}", f"/good{i}.jpg", "A" if i % 2 else "B") for i in range(24)]
    for i, (_, path, _) in enumerate(good):
        server.routes[path] = cs.send_bytes(images.jpeg(color=(10 * i, 80, 120)))
    bomb_body = gzip.compress(b"\0" * 20_000_000)
    server.routes["/redirected.jpg"] = cs.send_with_body(
        302, bomb_body, {"Location": "/target.jpg", "Content-Encoding": "gzip"}
    )
    server.routes["/target.jpg"] = cs.send_bytes(images.jpeg(color=(250, 250, 10)))
    server.routes["/drip.jpg"] = cs.drip(0.2)
    server.routes["/cover.webp"] = cs.send_bytes(
        images.encode(Image.new("RGB", (60, 90)), "WEBP"), "image/webp"
    )
    path = tmp_path / "books_data.csv"
    write_csv(
        path,
        [(t, server.url + p, c) for t, p, c in good]
        + [
            ("Redirected", server.url + "/redirected.jpg", "A"),
            ("Drip", server.url + "/drip.jpg", "B"),
            ("WebP", server.url + "/cover.webp", "A"),
        ],
    )
    deep = "[" * 5000 + "]" * 5000
    with open(path, "a", newline="") as f:
        f.write(f"Nul\0title,,['A'],{server.url}/good1.jpg,,,,,['A'],\n")
        f.write(f"Deep,,['A'],{server.url}/good2.jpg,,,,,{deep},\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # saved as "CSV UTF-8"
    settings = IngestSettings(
        top_k=2,
        per_class=None,
        balance=False,
        fetch=dataclasses.replace(FETCH, deadline_s=1.0, max_retries=1),
    )
    counts = run_example_gen(str(path), tmp_path / "run", settings)
    assert counts["failed_by_reason"] == {"deadline": 1, "unsupported_format": 1}
    assert counts["downloaded"] == 25  # every good cover, the redirected one included
    assert counts["duplicates_dropped"] == 0
    assert sum(n for split in counts["examples"].values() for n in split.values()) == 25
    (analysis_dir,) = glob.glob(str(tmp_path / "run/root/CoverExampleGen/category_analysis/*"))
    with open(os.path.join(analysis_dir, "category_analysis.json")) as f:
        facts = json.load(f)
    assert facts["skipped_rows"] == {"nested_too_deep": 1, "nul_byte": 1}
    assert (facts["rows_read"], facts["usable_rows"], facts["data_lines"]) == (29, 27, 29)
    assert facts["csv_encoding"] == "utf-8"


HOSTILE_CATEGORIES = ["=SUM(A1:A9)", "+Cooking", "@Home $x^{ and $6", "Sci\x1bFi\nction"]


def test_hostile_text_and_forbidden_targets_end_as_text_and_counts(server, tmp_path):
    """Categories and URLs a spreadsheet would run or matplotlib would read as math,
    control characters, and covers the URL policy refuses, through the real component,
    the report's category table and its plots."""
    from reporting import html_report, plots

    second = cs.CoverServer(host="127.0.0.2")
    second.routes["/a.jpg"] = cs.send_bytes(images.jpeg())
    rows = []
    for c, category in enumerate(HOSTILE_CATEGORIES):
        for i in range(6):
            server.routes[f"/{c}-{i}.jpg"] = cs.send_bytes(images.jpeg(color=(40 * c, 9 * i, 7)))
            rows.append((f"Book {c}-{i}", f"{server.url}/{c}-{i}.jpg", category))
    data = tmp_path / "data"
    (data / "covers").mkdir(parents=True)
    (data / "covers" / "local.png").write_bytes(images.png())
    (tmp_path / "outside.png").write_bytes(images.png())
    rows += [
        ("Beside the CSV", "covers/local.png", "+Cooking"),
        ("Formula URL", '=HYPERLINK("http://x/","open")', "+Cooking"),
        ("Outside", str(tmp_path / "outside.png"), "+Cooking"),
        ("Elsewhere", f"{second.url}/a.jpg", "+Cooking"),
    ]
    write_csv(data / "books_data.csv", rows)
    fetch = dataclasses.replace(
        FETCH, allow_private_addresses=False, allowed_networks=("127.0.0.1/32",)
    )
    settings = IngestSettings(
        top_k=4, per_class=None, balance=False, max_failure_share=0.5, fetch=fetch
    )
    try:
        counts = run_example_gen(str(data / "books_data.csv"), tmp_path / "run", settings)
    finally:
        second.close()

    assert counts["failed_by_reason"] == {
        "forbidden_address": 1,
        "missing_file": 1,
        "outside_covers_root": 1,
    }
    assert second.total_requests == 0
    categories = {
        e.features.feature["category"].bytes_list.value[0].decode()
        for e in stored_examples(tmp_path / "run")
    }
    assert categories == {"=SUM(A1:A9)", "+Cooking", "@Home $x^{ and $6", "Sci Fi ction"}
    assert sum(n for split in counts["examples"].values() for n in split.values()) == 25

    def cells(path):
        with open(path, newline="") as f:
            return list(csv.reader(f))[1:]

    (failures_csv,) = glob.glob(str(tmp_path / "run/root/CoverExampleGen/examples/*/failures.csv"))
    (analysis_dir,) = glob.glob(str(tmp_path / "run/root/CoverExampleGen/category_analysis/*"))
    counts_rows = cells(os.path.join(analysis_dir, "category_counts.csv"))
    for row in cells(failures_csv) + counts_rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
            assert not any(ord(ch) < 32 for ch in cell), row
    assert ['\'=HYPERLINK("http://x/","open")'] == [
        r[2] for r in cells(failures_csv) if r[3] == "missing_file"
    ]
    assert {r[0] for r in counts_rows} == {
        "'=SUM(A1:A9)",
        "'+Cooking",
        "'@Home $x^{ and $6",
        "Sci Fi ction",
    }

    (tmp_path / "report").mkdir()
    table = html_report._categories(analysis_dir, str(tmp_path / "report"))
    assert {r["category"] for r in table["rows"] if r["selected"]} == categories
    names = sorted(categories)
    plots.plot_confusion_matrix(np.eye(4, dtype=int) * 3, names, str(tmp_path / "cm.png"))
    plots.plot_per_class(
        [{"category": n, "precision": 0.5, "recall": 0.5} for n in names], str(tmp_path / "pc.png")
    )
    for png in ("cm.png", "pc.png"):
        assert Image.open(tmp_path / png).size[0] > 100


def features_of(record: bytes) -> dict[str, str]:
    feature = tf.train.Example.FromString(record).features.feature
    return {k: feature[k].bytes_list.value[0].decode() for k in ("title", "category", "source_url")}


def test_the_pretraining_split_holds_what_the_selection_left_but_no_book_of_eval_or_test(
    server, tmp_path
):
    rows, colours = [], iter(range(256))

    def book(title, category, path=None):
        if path is None:  # a cover of its own
            path = f"/c{len(rows)}.jpg"
            i = next(colours)
            server.routes[path] = cs.send_bytes(images.jpeg(color=(3 * i % 256, 7 * i % 256, 90)))
        rows.append((title, server.url + path, category))

    for category in ("Alpha", "Beta"):  # selected: 12 each, 8 each left
        for i in range(20):
            book(f"{category} {i}", category)
    for i in range(10):  # only for pretraining
        book(f"Gamma {i}", "Gamma")
    book("Gamma copy", "Gamma", "/c0.jpg")  # the bytes of Alpha 0's cover
    for i in range(12):  # Alpha books again, under another category, another cover
        book(f"Alpha {i}", "Echo")
    for i in range(5):  # under pretrain_min_books: nowhere
        book(f"Delta {i}", "Delta")
    write_csv(tmp_path / "books_data.csv", rows)
    settings = IngestSettings(
        top_k=2, per_class=12, balance=False, pretrain=True, pretrain_min_books=10, fetch=FETCH
    )

    counts = run_example_gen(str(tmp_path / "books_data.csv"), tmp_path / "run", settings)

    found = {
        split: [features_of(r) for r in records]
        for split, records in split_records(tmp_path / "run").items()
    }
    pretrain = found.pop("Split-pretrain")
    assert sorted(found) == ["Split-eval", "Split-test", "Split-train"]
    selected = [f for split in found.values() for f in split]
    assert sorted(f["category"] for f in selected) == ["Alpha"] * 12 + ["Beta"] * 12
    held_out = {f["title"] for split in ("eval", "test") for f in found[f"Split-{split}"]}
    assert held_out & {f"Alpha {i}" for i in range(12)}, "the case under test did not arise"
    # No book of eval or test is pretrained on, under any category or cover.
    assert not held_out & {f["title"] for f in pretrain}
    # Nothing is both selected and pretrained on; the copied cover stays with Alpha 0.
    assert not {f["source_url"] for f in selected} & {f["source_url"] for f in pretrain}
    assert "Gamma copy" not in {f["title"] for f in pretrain}
    by_category = collections.Counter(f["category"] for f in pretrain)
    echo_dropped = sum(f"Alpha {i}" in held_out for i in range(12))
    # Up to per_class of each category's books: every one here.
    assert by_category == {"Alpha": 8, "Beta": 8, "Gamma": 10, "Echo": 12 - echo_dropped}
    assert counts["pretrain_held_out_dropped"] == echo_dropped
    assert counts["duplicates_dropped"] == 1
    assert counts["examples"]["pretrain"] == dict(by_category)
