"""Data validation on the real pipeline: the reviewed schema, the DataGate, --allow-anomalies,
drift from the pushed model's data.

One output directory, four runs in order: PNG covers stop before Transform; the
same run with --allow-anomalies goes on (reusing the ingested data) and pushes
a model with its data's statistics; a drifted CSV then stops; so does a
category missing from the test split.
"""

import json
import os

import pytest

import local_runner
from bookcover import constants
from pipeline import embedded_data
from tests.pipeline_runs import TINY_TRAINING

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


def run(csv_path: str, out, *flags: str) -> tuple[dict, int, str]:
    """(run_summary.json, exit status, report page) of one local_runner run."""
    argv = ["--books-csv", csv_path, "--output-dir", str(out), *TINY_TRAINING, *flags]
    try:
        local_runner.main(argv)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    with open(out / "run_summary.json") as f:
        summary = json.load(f)
    with open(out / "report" / "index.html") as f:
        return summary, status, f.read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    out = tmp_path_factory.mktemp("out")
    # 4 x 50 covers: the train split has the 100 covers TFDV needs for image statistics.
    books = embedded_data.generate(str(data / "a"), categories=4, per_category=50)
    png = run(books, out, "--categories", "4", "--per-class", "50", "--cover-format", "PNG")
    allowed = run(
        books,
        out,
        *("--categories", "4", "--per-class", "50", "--cover-format", "PNG"),
        "--allow-anomalies",
    )
    # Three categories instead of four, JPEG instead of PNG: category shares drift by 0.25.
    other = embedded_data.generate(str(data / "b"), categories=3, per_category=60)
    drifted = run(other, out, "--categories", "3", "--per-class", "60")
    # Two books in the fifth category: too few to reach every split.
    small = embedded_data.generate(str(data / "c"), categories=4, per_category=8)
    missing = run(small, out, "--categories", "5", "--no-balance")
    return out, png, allowed, drifted, missing


def problems(summary: dict) -> list[tuple[str, str, str]]:
    return [
        (f["split"], f["feature"], f["problem"]) for f in summary["data_validation"]["findings"]
    ]


def test_png_covers_stop_before_transform_with_a_clear_message(runs, capsys):
    _, (summary, status, page), *_ = runs
    assert status == 1
    assert (
        "train",
        "image",
        "covers must be JPEG: TFDV's image format histogram holds another format",
    ) in problems(summary)
    (finding,) = [f for f in summary["data_validation"]["findings"] if f["feature"] == "image"]
    assert "png 100%" in finding["detail"]
    statuses = {name: c["status"] for name, c in summary["components"].items()}
    assert statuses["DataGate"] == "failed"
    assert "Transform" not in statuses and "Trainer" not in statuses
    assert summary["stopped"] and summary["data_validation"]["allowed"] is False
    assert summary["report"].endswith("index.html")
    assert "The run stopped here, before Transform." in page and "covers must be JPEG" in page


def test_allow_anomalies_goes_on_reusing_the_ingested_data(runs):
    out, _, (summary, status, page), *_ = runs
    assert status == 0
    statuses = {name: c["status"] for name, c in summary["components"].items()}
    # Nothing was lost: the stopped run's examples and statistics are reused.
    assert statuses["CoverExampleGen"] == statuses["StatisticsGen"] == "cached"
    assert statuses["DataGate"] == statuses["Transform"] == statuses["Trainer"] == "executed"
    verdict = summary["data_validation"]
    assert verdict["allowed"] is True and any(f["feature"] == "image" for f in verdict["findings"])
    # The pushed model carries its data's statistics: the next run's drift baseline.
    assert summary["pushed_model"]
    assert os.path.exists(os.path.join(summary["pushed_model"], constants.BASELINE_STATISTICS))
    assert "Allowed through with --allow-anomalies." in page


def test_a_drifted_run_stops(runs):
    out, _, allowed, (summary, status, _), _ = runs
    assert status == 1
    found = problems(summary)
    assert ("train", "category", "drift above threshold") in found, found
    (drift,) = [
        f for f in summary["data_validation"]["findings"] if f["problem"].startswith("drift")
    ]
    assert "expected at most 0.1" in drift["detail"]
    # Image formats drifted too: PNG before, JPEG now.
    assert ("train", "image", "image format drift above threshold") in found
    # The model the last good run pushed stays where a server loads it.
    assert os.listdir(out / "serving_model") == [os.path.basename(allowed[0]["pushed_model"])]


def test_a_category_missing_from_the_test_split_stops(runs):
    *_, (summary, status, _) = runs
    assert status == 1
    found = problems(summary)
    assert ("test", "category", "a selected category is missing") in found, found
    # Its share of train is under the skew threshold: only this check catches it.
    assert ("test", "category", "skew above threshold") not in found
