"""The compiled Kubeflow pipeline's own steps, executed here the way KFP's launcher runs them.

Each step runs as a subprocess with the container command and arguments from
the compiled KFP package, the YAML the README's command writes
(kubeflow/local_launcher.py), on generated covers, one epoch.
"""

import json
import os

import pytest
from kfp.client import client as kfp_client
from tfx.dsl.io import fileio

from bookcover import constants
from kubeflow import local_launcher, runner
from pipeline import configs, embedded_data
from tests.pipeline_runs import STEPS

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

CATEGORIES = 3


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    base = tmp_path_factory.mktemp("kfp")
    csv_path = embedded_data.generate(str(base / "data"), categories=CATEGORIES, per_category=12)
    root = str(base / "root")
    config = {
        "image": "registry.example/bookcover/pipeline:test",
        "pipeline_root": root,
        "books_csv": csv_path,
        "categories": CATEGORIES,
        "per_class": 12,
        "epochs": 1,
        "tuner_epochs": 1,
        "learning_rates": [1e-3],
        "first_filters": [8],
        "batch_size": 8,
        "accuracy_floor": 0.0,
        "schema_file": configs.SCHEMA_FILE,  # the image's copy is at runner.IMAGE_SCHEMA_FILE
        # The generated covers are files beside the CSV; a cluster config must say so
        # (test_kubeflow.py: local files are off by default there).
        "allow_local_files": True,
    }
    config_path = base / "cluster.json"
    config_path.write_text(json.dumps(config))
    job = runner.main(["--config", str(config_path), "--output", str(base / "bookcover.yaml")])
    launcher = local_launcher.LocalLauncher(job, root)
    results = launcher.run()
    return launcher, results, root, job


def artifact(launcher, step: str, key: str) -> dict:
    (found,) = launcher.outputs[step][key]
    return found


def test_every_container_step_ran_and_reported_its_declared_outputs(executed):
    launcher, results, root, _ = executed
    steps = [n for n in local_launcher.task_order(launcher.spec) if launcher.container(n)]
    assert set(results) == set(steps) == STEPS
    for step in steps:
        declared = launcher.component(step)["outputDefinitions"]["artifacts"]
        assert set(results[step]["artifacts"]) == set(declared), step
        for key in declared:
            assert fileio.exists(artifact(launcher, step, key)["uri"]), (step, key)
        assert os.path.exists(os.path.join(root, step, local_launcher.EXECUTOR_OUTPUT))


def test_kfps_client_reads_the_package_the_launcher_ran(executed):
    """The package, parsed as kfp.Client().create_run_from_pipeline_package parses it, is
    the DAG the launcher ran, with the config's pipeline root."""
    launcher, _, root, package = executed
    spec = kfp_client._extract_pipeline_yaml(package).pipeline_spec
    assert set(spec.root.dag.tasks) == set(launcher.spec["root"]["dag"]["tasks"])
    assert spec.default_pipeline_root == root == launcher.runtime["gcsOutputDirectory"]


def test_example_gen_driver_fingerprints_the_csv_and_the_executor_splits(executed):
    launcher, _, root, _ = executed
    with open(os.path.join(root, "CoverExampleGen", "driver.log")) as f:
        assert "Calculated fingerprint" in f.read()
    examples = artifact(launcher, "CoverExampleGen", "examples")
    metadata = examples["metadata"]
    assert json.loads(metadata["split_names"]) == list(constants.SPLIT_NAMES)
    assert "num_files:1" in metadata["input_fingerprint"]  # the driver's, through the platform
    for split in constants.SPLIT_NAMES:
        assert fileio.glob(os.path.join(examples["uri"], f"Split-{split}", "*.gz")), split
    # The custom artifact type resolves in the container (bookcover.CategoryAnalysis).
    analysis = artifact(launcher, "CoverExampleGen", "category_analysis")["uri"]
    with open(os.path.join(analysis, "category_analysis.json")) as f:
        assert len(json.load(f)["selected_categories"]) == CATEGORIES


def test_statistics_schema_and_transform_graph(executed):
    launcher, *_ = executed
    statistics = artifact(launcher, "StatisticsGen", "statistics")["uri"]
    for split in constants.SPLIT_NAMES:
        assert os.path.exists(os.path.join(statistics, f"Split-{split}", "FeatureStats.pb"))
    schema = artifact(launcher, "ImportSchemaGen", "schema")["uri"]
    with open(os.path.join(schema, "schema.pbtxt")) as f:
        assert f'name: "{constants.IMAGE_KEY}"' in f.read()
    graph = artifact(launcher, "Transform", "transform_graph")["uri"]
    assert os.path.isdir(os.path.join(graph, "transform_fn"))
    vocabulary = os.path.join(graph, "transform_fn", "assets", constants.CATEGORY_VOCABULARY)
    with open(vocabulary) as f:
        assert len(f.read().splitlines()) == CATEGORIES


def test_trainer_ran_the_compiled_config_and_exported_a_servable_model(executed):
    launcher, *_ = executed
    model = artifact(launcher, "Trainer", "model")["uri"]
    assert os.path.exists(os.path.join(model, "Format-Serving", "saved_model.pb"))
    run = artifact(launcher, "Trainer", "model_run")["uri"]
    with open(os.path.join(run, "history.json")) as f:
        assert len(json.load(f)["loss"]) == 1  # "epochs": 1 reached run_fn from the IR
    pushed = artifact(launcher, "Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1.0
    assert os.path.exists(os.path.join(pushed["pushed_destination"], "saved_model.pb"))


def test_the_report_is_an_artifact_of_the_run(executed):
    launcher, *_ = executed
    report = artifact(launcher, "ReportGen", "report")["uri"]
    for name in ("index.html", "run_summary.json", "confusion_matrix.png", "training_curves.png"):
        assert os.path.exists(os.path.join(report, name)), name
    with open(os.path.join(report, "run_summary.json")) as f:
        summary = json.load(f)
    assert len(summary["categories"]) == CATEGORIES and summary["blessed"] is True
    assert (
        summary["pushed_model"]
        == artifact(launcher, "Pusher", "pushed_model")["metadata"]["pushed_destination"]
    )
    with open(os.path.join(report, "index.html")) as f:
        assert "id='evaluation'" in f.read()


def test_a_failing_step_names_itself_and_its_log(executed, tmp_path):
    *_, job = executed
    broken = local_launcher.LocalLauncher(job, str(tmp_path))
    with pytest.raises(local_launcher.StepFailedError, match=r"StatisticsGen \(executor\)"):
        broken.run_step("StatisticsGen")  # no examples upstream
