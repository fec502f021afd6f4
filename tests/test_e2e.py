"""The real pipeline, end to end, on a tiny generated dataset served over real HTTP."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

import local_runner
from pipeline import embedded_data, report
from reporting import evaluation, html_report
from tests import browser, http_covers
from tests.pipeline_runs import STEPS, TINY_TRAINING

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


@pytest.fixture(scope="module")
def covers_over_http(tmp_path_factory):
    """Generated covers behind http.server on 127.0.0.1, two of them broken."""
    root = tmp_path_factory.mktemp("covers")
    with http_covers.serving(str(root)) as url:
        csv_path = embedded_data.generate(
            str(root), categories=4, per_category=16, image_url_prefix=url
        )
        os.remove(root / "covers" / "c00" / "0003.jpg")  # -> HTTP 404
        (root / "covers" / "c01" / "0004.jpg").write_text("<html>not a cover</html>")
        yield csv_path


@pytest.fixture(scope="module")
def runs(covers_over_http, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    argv = [
        "--books-csv",
        covers_over_http,
        "--categories",
        "4",
        "--per-class",
        "16",
        *TINY_TRAINING,
        "--epochs",  # two, and a grid of two points: the curves and the trial table
        "2",
        "--first-filters",
        "8",
        "16",
        "--output-dir",
        str(out),
    ]
    # The first run as a user runs it, in its own process with the output on a pipe.
    done = subprocess.run(
        [sys.executable, "local_runner.py", *argv],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # interleaved, as a terminal shows them
        text=True,
    )
    assert done.returncode == 0, done.stdout
    with open(out / "run_summary.json") as f:
        first = json.load(f)
    first["terminal"] = done.stdout
    second = local_runner.main(argv)
    report_files = sorted(os.listdir(out / "report")) + sorted(os.listdir(out / "report/gallery"))
    # No model can reach a floor above 1.0: the Evaluator must block it.
    floor = argv.index("--accuracy-floor") + 1
    blocked = local_runner.main([*argv[:floor], "1.01", *argv[floor + 1 :]])
    return out, first, second, blocked, report_files


def test_every_component_executed_once(runs):
    _, first, *_ = runs
    executed = {name for name, c in first["components"].items() if c["status"] == "executed"}
    assert STEPS <= executed
    times = {name: first["components"][name]["wall_time_s"] for name in STEPS}
    working = ("CoverExampleGen", "StatisticsGen", "Transform", "Tuner", "Trainer", "Evaluator")
    assert all(times[name] > 0.5 for name in working), times  # the steps that do real work
    assert sum(times.values()) <= first["wall_time_s"]  # steps run one after another


NOISE = (
    "FutureWarning",
    "Local rendezvous",
    "TF-TRT",
    "Unable to register",
    "property_predicate",
    "WARNING:",
    "Exception ignored",
    "Traceback",
)


def test_the_terminal_is_readable(runs):
    """Quiet by default: one line as each step starts and ends, progress, the summary."""
    out, first, *_ = runs
    lines = first["terminal"].splitlines()
    assert len(lines) < 120, first["terminal"]
    for pattern in NOISE:
        assert pattern not in first["terminal"], pattern
    assert "\r" not in first["terminal"] and "\x1b" not in first["terminal"]  # a pipe
    for name in STEPS:
        assert any(line.endswith(f"] {name} ...") for line in lines), name
        assert any(f"] {name}: executed in " in line for line in lines), name
    assert any(line.startswith("CoverExampleGen: covers: 100% 64/64") for line in lines)
    assert sum(line.startswith("Tuner: trial ") for line in lines) == 2
    assert any(line.startswith("Trainer: epoch 2/2: accuracy ") for line in lines)
    # The full log is kept, named by the run, and the summary names it.
    assert lines[-1] == f"  log:           {first['log']}"
    assert os.path.basename(first["log"]) == f"{first['run_id']}.log"
    with open(first["log"]) as f:
        log = f.read()
    assert "Component Trainer is running." in log and "Search space summary" in log


def test_a_rerun_checks_the_data_against_the_new_push_and_executes_nothing_else(runs):
    out, first, second, *_ = runs
    statuses = {name: c["status"] for name, c in second["components"].items()}
    # The first run pushed a model: the gate's cache key holds the latest push, so it
    # runs again, now comparing the data with that model's (and the report reads it).
    rerun = {"DataGate", "ReportGen"}
    assert {statuses[name] for name in STEPS - rerun} == {"cached"}, statuses
    assert {statuses[name] for name in rerun} == {"executed"}, statuses
    verdicts = sorted(
        glob.glob(str(out / "pipeline/DataGate/verdict/*/verdict.json")),
        key=lambda path: int(os.path.basename(os.path.dirname(path))),
    )
    baselines = [json.load(open(v))["drift_baseline"] for v in verdicts]
    assert baselines[0] is None
    assert os.path.join(first["pushed_model"], "assets.extra/train_statistics.pb") in baselines


def test_schema_and_statistics_exist(runs):
    out, *_ = runs
    assert glob.glob(str(out / "pipeline/ImportSchemaGen/schema/*/schema.pbtxt"))
    for split in ("train", "eval", "test"):
        assert glob.glob(str(out / f"pipeline/StatisticsGen/statistics/*/Split-{split}/*.pb"))


def test_run_summary_holds_the_promised_fields(runs):
    out, first, *_ = runs
    with open(out / "run_summary.json") as f:
        summary = json.load(f)
    assert len(summary["categories"]) == 4
    assert set(summary["examples"]) == {"train", "eval", "test"}
    total = sum(n for split in summary["examples"].values() for n in split.values())
    assert total == 4 * 16 - 2  # the two broken covers are counted, not stored
    assert summary["ingestion"]["failed_by_reason"] == {"http_404": 1, "not_an_image": 1}
    assert set(summary["best_hyperparameters"]) >= {"learning_rate", "first_filters"}
    assert summary["best_hyperparameters"]["first_filters"] in (8, 16)
    trials = summary["tuner_trials"]
    assert sorted(t["first_filters"] for t in trials) == [8, 16]
    assert all(t["epochs_run"] == 1 and t["status"] == "COMPLETED" for t in trials)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert first["blessed"] is True and first["pushed_model"]


def test_failures_are_listed_beside_the_examples(runs):
    out, *_ = runs
    (failures,) = glob.glob(str(out / "pipeline/CoverExampleGen/examples/*/failures.csv"))
    with open(failures) as f:
        lines = f.read().splitlines()
    assert lines[0] == "row,category,url,reason,detail"
    assert sorted(line.split(",")[3] for line in lines[1:]) == ["http_404", "not_an_image"]


def test_pushed_model_classifies_raw_jpeg_bytes(runs, covers_over_http):
    _, first, *_ = runs
    pushed = first["pushed_model"]
    assert os.path.basename(pushed).isdigit()  # TF Serving's <base>/<version>/ layout
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))
    serve = tf.saved_model.load(pushed).signatures["serving_default"]
    cover = os.path.join(os.path.dirname(covers_over_http), "covers", "c02", "0000.jpg")
    with open(cover, "rb") as f:
        result = serve(images=tf.constant([f.read()]))
    probabilities = result["probabilities"].numpy()
    assert probabilities.shape == (1, 4)
    assert abs(probabilities.sum() - 1.0) < 1e-4
    assert result["category"].numpy()[0].decode() in first["categories"]


def test_a_model_below_the_floor_is_blocked_and_the_previous_push_stays(runs):
    out, first, _, blocked, _ = runs
    statuses = {name: c["status"] for name, c in blocked["components"].items()}
    assert statuses["Trainer"] == "cached" and statuses["Evaluator"] == "executed"
    assert blocked["blessed"] is False
    assert blocked["pushed_model"] is None
    assert any(
        r.startswith("categorical_accuracy = ") and ">= 1.01" in r
        for r in blocked["blocked_reasons"]
    ), blocked["blocked_reasons"]
    assert first["blocked_reasons"] == []
    # The model pushed by the first run is still what a server would load.
    assert os.path.exists(os.path.join(first["pushed_model"], "saved_model.pb"))
    assert os.listdir(out / "serving_model") == [os.path.basename(first["pushed_model"])]


def test_every_report_file_is_written(runs):
    out, first, _, blocked, report_files = runs
    expected = {
        "index.html",
        "category_cumulative_share.png",
        "training_curves.png",
        html_report.CONFUSION_PNG,
        html_report.PER_CLASS_PNG,
        html_report.TRIALS_PNG,
        html_report.GALLERY_DIR,
    }
    assert expected <= set(report_files)
    assert any(f.startswith("right_") or f.startswith("wrong_") for f in report_files)
    assert first["report"] == blocked["report"] == str(out / "report" / "index.html")
    # The report is the ReportGen step's artifact; the blocked run made its own.
    assert blocked["report_artifact"] != first["report_artifact"]
    assert blocked["report_run_id"] == blocked["run_id"]
    with open(out / "run_summary.json") as f:
        assert json.load(f)["report"] == blocked["report"]


def test_confusion_matrix_counts_add_up_to_the_test_split(runs):
    out, first, *_ = runs
    test_size = sum(first["examples"]["test"].values())
    evaluations = glob.glob(str(out / "pipeline/Evaluator/evaluation/*"))
    assert len(evaluations) == 2  # the blessed run's and the blocked run's, same model
    for evaluation_uri in evaluations:
        matrix = evaluation.confusion_matrix(evaluation_uri, len(first["categories"]))
        assert matrix.sum() == test_size == first["test_examples"]
        assert matrix.trace() / test_size == pytest.approx(first["test_accuracy"])


def test_report_tool_regenerates_from_an_existing_output(runs):
    out, *_ = runs
    shutil.rmtree(out / "report")
    report.main(["--output-dir", str(out)])
    text = (out / "report" / "index.html").read_text()
    assert "NOT blessed" in text and "categorical_accuracy" in text  # the latest run: blocked
    for section in ("categories", "data", "grid-search", "training", "evaluation", "gallery"):
        assert f"id='{section}'" in text
    with pytest.raises(SystemExit, match="no metadata.sqlite"):
        report.main(["--output-dir", str(out / "nowhere")])


def test_report_opens_in_a_real_browser(runs, tmp_path):
    out, _, _, blocked, _ = runs
    if not browser.chromium():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    page = browser.render(blocked["report"], str(tmp_path))
    assert page["images"] >= 7 and page["broken"] == [], page["broken"]
    accuracy = f"{blocked['test_accuracy']:.1%}"
    assert f"Test accuracy\t{accuracy}" in page["text"], page["text"][:500]
