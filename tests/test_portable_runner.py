"""The pipeline's Beam steps on Beam's portable runner (a job service and an EXTERNAL SDK
worker pool on 127.0.0.1, as Flink and Spark run Python workers), beside the DirectRunner."""

import glob
import os

import pytest
import tensorflow as tf

import local_runner
from bookcover import constants, split_statistics
from pipeline import embedded_data
from tests import http_covers
from tests.pipeline_runs import STEPS, TINY_TRAINING
from tests.portable_beam import portable_runner

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

BEAM_STEPS = ("CoverExampleGen", "StatisticsGen", "Transform", "Evaluator")


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    """The embedded data's CSV, its covers served on 127.0.0.1 while the module runs."""
    root = tmp_path_factory.mktemp("covers")
    with http_covers.serving(str(root)) as url:
        yield embedded_data.generate(str(root), categories=3, per_category=12, image_url_prefix=url)


@pytest.fixture(scope="module")
def beam(tmp_path_factory):
    with portable_runner(str(tmp_path_factory.mktemp("portable_logs"))) as services:
        yield services


@pytest.fixture(scope="module")
def runs(tmp_path_factory, covers, beam):
    """The same tiny run twice, on the DirectRunner and on the portable runner."""
    argv = ["--books-csv", covers, "--categories", "3", "--per-class", "12", *TINY_TRAINING]
    direct = tmp_path_factory.mktemp("direct")
    portable = tmp_path_factory.mktemp("portable")
    beam_args = [f"--beam-arg={arg}" for arg in beam.args]
    return {
        "direct": (
            direct,
            local_runner.main([*argv, "--output-dir", str(direct), "--classify-uncategorised"]),
        ),
        "portable": (
            portable,
            local_runner.main([*argv, "--output-dir", str(portable), *beam_args]),
        ),
    }


def _artifact(out, step: str, key: str) -> str:
    (uri,) = glob.glob(str(out / "pipeline" / step / key / "*"))
    return uri


def _examples(out) -> dict[str, list[tuple[str, str]]]:
    """Per split, the (content hash, category) of every example, sorted."""
    uri = _artifact(out, "CoverExampleGen", "examples")
    splits = {}
    for split_dir in sorted(glob.glob(os.path.join(uri, "Split-*"))):
        files = sorted(glob.glob(os.path.join(split_dir, "*")))
        rows = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            rows.append(
                (
                    feature[constants.CONTENT_HASH_KEY].bytes_list.value[0].decode(),
                    feature[constants.CATEGORY_KEY].bytes_list.value[0].decode(),
                )
            )
        splits[os.path.basename(split_dir)] = sorted(rows)
    return splits


def test_every_step_runs_on_the_portable_runner(runs, beam):
    _, summary = runs["portable"]
    executed = {name for name, c in summary["components"].items() if c["status"] == "executed"}
    assert STEPS <= executed
    # Each Beam step submitted its job to the job service, whose SDK workers ran it.
    assert beam.jobs_run() >= len(BEAM_STEPS)
    assert beam.workers_started() >= 1


def test_the_examples_are_the_same_as_on_the_direct_runner(runs):
    direct, portable = runs["direct"][0], runs["portable"][0]
    examples = _examples(portable)
    assert examples == _examples(direct)
    assert sum(len(rows) for rows in examples.values()) == 36
    failures = os.path.join(_artifact(portable, "CoverExampleGen", "examples"), "failures.csv")
    assert open(failures).read().splitlines() == ["row,category,url,reason,detail"]


def test_statistics_transform_and_evaluation_match_the_direct_runner(runs):
    direct, portable = runs["direct"][0], runs["portable"][0]
    statistics = [
        split_statistics.load_split_statistics(_artifact(out, "StatisticsGen", "statistics"))
        for out in (direct, portable)
    ]
    counts = [
        {split: stats.datasets[0].num_examples for split, stats in found.items()}
        for found in statistics
    ]
    assert counts[0] == counts[1] and counts[0]["train"] > 0
    vocabularies = []
    for out in (direct, portable):
        assets = os.path.join(
            _artifact(out, "Transform", "transform_graph"), "transform_fn", "assets"
        )
        vocabularies.append(
            {name: open(os.path.join(assets, name), "rb").read() for name in os.listdir(assets)}
        )
    assert vocabularies[0] == vocabularies[1] and vocabularies[0]
    # The Evaluator's Beam job saw the same test split (the models, trained twice, differ).
    evaluated = [runs[kind][1] for kind in ("direct", "portable")]
    assert evaluated[0]["test_examples"] == evaluated[1]["test_examples"] == counts[0]["test"]
    assert all(0.0 <= run["test_accuracy"] <= 1.0 for run in evaluated)


def test_the_catalogue_classifies_alike_on_both_runners(runs, covers, beam, tmp_path):
    """The catalogue pipeline on the portable runner: its DoFns and model handler pickled
    to the pool's SDK workers, with the pushed model of the DirectRunner's run."""
    import csv

    from components.catalogue.classify import CatalogueSettings, classify_catalogue

    model = str(runs["direct"][0] / "serving_model")
    settings = CatalogueSettings(all_rows=True)
    jobs_before = beam.jobs_run()
    predictions = {}
    for kind, beam_args in (("direct", None), ("portable", beam.args)):
        out = str(tmp_path / kind)
        summary = classify_catalogue(covers, model, out, settings, beam_args)
        # The embedded data: 44 rows, one without a cover.
        assert summary["classified"] == 43 and summary["failed"] == {"no_image": 1}
        with open(os.path.join(out, "predictions.csv"), newline="") as f:
            rows = {row["row"]: row for row in csv.DictReader(f)}
        predictions[kind] = {
            row: (line["category_1"], line["score_1"] and round(float(line["score_1"]), 4))
            for row, line in rows.items()
        }
    assert beam.jobs_run() == jobs_before + 1
    assert predictions["portable"] == predictions["direct"]
    assert len(predictions["direct"]) == 44


def test_classify_uncategorised_adds_the_catalogue_to_the_run_and_its_report(runs):
    """The DirectRunner's run had --classify-uncategorised: the embedded data's one row
    without a category, classified after the push, in the artifact and the report."""
    import csv
    import json

    out, summary = runs["direct"]
    assert summary["components"]["ClassifyCatalogue"]["status"] == "executed"
    uri = _artifact(out, "ClassifyCatalogue", "predictions")
    with open(os.path.join(uri, "predictions.csv"), newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["title"] == "A book without a category" and row["category_1"]
    assert row["model_version"] == os.path.basename(summary["pushed_model"])
    with open(os.path.join(uri, "summary.json")) as f:
        assert json.load(f)["predicted_categories"] == {row["category_1"]: 1}
    assert summary["catalogue"]["classified"] == 1
    page = (out / "report" / "index.html").read_text()
    assert "id='catalogue'" in page and "A book without a category" in page
    assert os.listdir(out / "report" / "catalogue") == [f"row{row['row']}.jpg"]
