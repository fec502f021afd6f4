"""The Kubeflow V2 compile: read by KFP's own client code and its pipeline-spec protobufs,
not string matching."""

import json
import os
import shutil

import pytest
from google.protobuf import json_format
from kfp.client import client as kfp_client
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_beam_component

from kubeflow import runner
from models import hyperparameters
from pipeline import configs, pipeline
from tests.pipeline_runs import UPSTREAM

IMAGE = "registry.example/bookcover/pipeline:test"
BEAM_ARGS = [
    "--runner=PortableRunner",
    "--job_endpoint=flink-jobserver:8099",
    "--environment_type=EXTERNAL",
    "--environment_config=localhost:50000",
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp")
    config = {
        "image": IMAGE,
        "pipeline_root": "gs://bucket/bookcover",
        "books_csv": "gs://bucket/data/books_data.csv",
        "beam_pipeline_args": BEAM_ARGS,
        "resources": {
            "default": {"cpu": 2, "memory_gib": 8},
            "Trainer": {"cpu": 8, "memory_gib": 32, "gpu_type": "NVIDIA_TESLA_T4", "gpu_count": 2},
        },
    }
    spec, deployment = compile_config(config, out)
    return spec, deployment, runner.build(config)


def compile_config(config: dict, out) -> tuple:
    """(PipelineSpec, deployment config) of the README's compile command on `config`."""
    config_path = out / "cluster.json"
    config_path.write_text(json.dumps(config))
    # The package read as create_run_from_pipeline_package reads it.
    output = runner.main(["--config", str(config_path), "--output", str(out / "bookcover.yaml")])
    spec = kfp_client._extract_pipeline_yaml(output).pipeline_spec
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
        ignore_unknown_fields=True,
    )
    return spec, deployment


def test_the_kfp_package_carries_the_pipeline_root(compiled):
    spec, _, _ = compiled
    assert spec.default_pipeline_root == "gs://bucket/bookcover"


def test_the_vertex_job_holds_the_same_spec_and_root(compiled, tmp_path):
    spec, _, _ = compiled
    config = tmp_path / "cluster.json"
    config.write_text(
        json.dumps(
            {"image": IMAGE, "pipeline_root": "gs://b/r", "books_csv": "gs://b/d/books_data.csv"}
        )
    )
    path = runner.main(["--config", str(config), "--vertex-job", str(tmp_path / "job.json")])
    with open(path) as f:
        job = json.load(f)
    assert {"displayName", "pipelineSpec", "runtimeConfig"} <= set(job)
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/r"
    assert set(job["pipelineSpec"]["root"]["dag"]["tasks"]) == set(spec.root.dag.tasks)
    with pytest.raises(ValueError, match="should end with one of"):  # what KFP's client says
        kfp_client._extract_pipeline_yaml(path)


@pytest.mark.parametrize(
    "flag, name", [("--output", "p.json"), ("--output", "p.tar"), ("--vertex-job", "p.yaml")]
)
def test_an_output_no_client_takes_is_refused_in_one_line(flag, name, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        runner.parse_args(["--config", "c.json", flag, str(tmp_path / name)])
    assert e.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert name in line and (".yaml" in line or ".json" in line)


def container_of(spec, deployment, task_name):
    executor = spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label
    return deployment.executors[executor].container


def test_every_component_with_its_dependencies(compiled):
    spec, _, _ = compiled
    tasks = spec.root.dag.tasks
    assert {t for t in tasks if not t.startswith("latest_")} == set(UPSTREAM)
    for name, upstream in UPSTREAM.items():
        depends = {t for t in tasks[name].dependent_tasks if not t.startswith("latest_")}
        assert depends == upstream, name
    # The gate's cache key holds the latest push (a query step of its own).
    assert any(
        t.startswith("latest_pushed_model_resolver") for t in tasks["DataGate"].dependent_tasks
    )
    # TFX splits the latest-blessed-model resolver into two query steps.
    assert "latest_blessed_model_resolver-model-blessing-resolver" in tasks
    assert "latest_blessed_model_resolver-model-resolver" in tasks["Evaluator"].dependent_tasks


def test_configured_image_on_every_step(compiled):
    spec, deployment, _ = compiled
    for name in UPSTREAM:
        assert container_of(spec, deployment, name).image == IMAGE, name


def test_beam_args_on_the_beam_powered_steps(compiled):
    spec, deployment, pipeline = compiled
    beam_steps = [
        c.id for c in pipeline.components if isinstance(c, base_beam_component.BaseBeamComponent)
    ]
    assert {"CoverExampleGen", "StatisticsGen", "Transform", "Evaluator"} <= set(beam_steps)
    for name in beam_steps:
        container = container_of(spec, deployment, name)
        args = list(container.args) + list(container.lifecycle.pre_cache_check.args)
        for arg in BEAM_ARGS:
            assert arg in args, (name, arg)


def test_gpu_and_resources_per_step(compiled):
    spec, deployment, _ = compiled
    trainer = container_of(spec, deployment, "Trainer").resources
    assert trainer.accelerator.type == "NVIDIA_TESLA_T4" and trainer.accelerator.count == 2
    assert trainer.cpu_limit == 8 and trainer.memory_limit == 32
    tuner = container_of(spec, deployment, "Tuner").resources
    assert tuner.accelerator.count == 0 and tuner.cpu_limit == 2


def test_custom_example_gen_runs_the_projects_executor_with_the_tfx_driver(compiled):
    spec, deployment, _ = compiled
    container = container_of(spec, deployment, "CoverExampleGen")
    args = list(container.args)
    assert args[args.index("--executor_class_path") + 1] == (
        "components.cover_example_gen.executor.Executor"
    )
    # The V2 runner's driver step for FileBasedExampleGen subclasses, run in our image.
    driver = container.lifecycle.pre_cache_check
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in " ".join(driver.command)


@pytest.mark.parametrize("preset, batch_size", [("default", 64), ("seed", 128)])
def test_trainer_batch_size_follows_the_model_preset(preset, batch_size):
    bookcover = runner.build(
        {
            "pipeline_root": "gs://bucket/bookcover",
            "books_csv": "gs://bucket/data/books_data.csv",
            "model_preset": preset,
        }
    )
    (trainer,) = [c for c in bookcover.components if c.id == "Trainer"]
    custom_config = trainer.exec_properties["custom_config"]
    if isinstance(custom_config, str):
        custom_config = json.loads(custom_config)
    assert custom_config["batch_size"] == batch_size == hyperparameters.PRESETS[preset].batch_size


def test_the_model_codes_fingerprint_is_in_the_cache_key_of_the_steps_that_run_it(tmp_path):
    bookcover = runner.build(
        {"pipeline_root": "gs://bucket/bookcover", "books_csv": "gs://bucket/data/books_data.csv"}
    )
    code = pipeline.model_code_fingerprint()
    for step in ("Transform", "Tuner", "Trainer"):
        (component,) = [c for c in bookcover.components if c.id == step]
        custom_config = component.exec_properties["custom_config"]
        if isinstance(custom_config, str):
            custom_config = json.loads(custom_config)
        assert custom_config["model_code"] == code, step
    # A copy of the model code with one line changed has another fingerprint.
    for package in configs.MODEL_CODE_PACKAGES:
        shutil.copytree(os.path.join(configs.PROJECT_ROOT, package), tmp_path / package)
    assert pipeline.model_code_fingerprint(str(tmp_path)) == code
    with open(tmp_path / "models" / "model.py", "a") as f:
        f.write("# a change\n")
    assert pipeline.model_code_fingerprint(str(tmp_path)) != code


def test_seed_preset_compiles_to_what_local_runner_runs():
    """One preset resolution: the seed preset on Kubeflow is the seed grid at batch 128,
    exactly as `local_runner.py --model-preset seed` runs it on real data."""
    import local_runner

    bookcover = runner.build(
        {
            "pipeline_root": "gs://bucket/bookcover",
            "books_csv": "gs://bucket/data/books_data.csv",
            "model_preset": "seed",
        }
    )
    configs_by_id = {}
    for component in bookcover.components:
        if component.id in ("Tuner", "Trainer"):
            config = component.exec_properties["custom_config"]
            configs_by_id[component.id] = json.loads(config) if isinstance(config, str) else config
    local = local_runner.training_settings_from(
        local_runner.parse_args(["--books-csv", "b.csv", "--model-preset", "seed"])
    )
    for config in configs_by_id.values():
        assert config["learning_rates"] == list(hyperparameters.SEED_LEARNING_RATES)
        assert config["first_filters"] == list(hyperparameters.SEED_FIRST_FILTERS)
        assert config["batch_size"] == 128 == local.batch_size
        assert config["model_options"] == local.model_options == hyperparameters.SEED_MODEL_OPTIONS
    assert configs_by_id["Trainer"]["train_epochs"] == local.train_epochs
    grid = runner.build(
        {
            "pipeline_root": "gs://b/r",
            "books_csv": "gs://b/d/books_data.csv",
            "learning_rates": [3e-4],
            "first_filters": [20],
        }
    )
    (tuner,) = [c for c in grid.components if c.id == "Tuner"]
    config = tuner.exec_properties["custom_config"]
    config = json.loads(config) if isinstance(config, str) else config
    assert (config["learning_rates"], config["first_filters"]) == ([3e-4], [20])


def ingest_fetch(bookcover):
    from components.cover_example_gen.settings import IngestSettings

    (example_gen,) = [c for c in bookcover.components if c.id == "CoverExampleGen"]
    return IngestSettings.from_dict(
        json.loads(example_gen.exec_properties["ingest_settings"])
    ).fetch


def test_cover_urls_cannot_reach_the_cluster_or_local_files_unless_the_config_allows():
    base = {"pipeline_root": "gs://bucket/bookcover", "books_csv": "gs://bucket/data/b.csv"}
    fetch = ingest_fetch(runner.build(base))
    assert (fetch.allow_private_addresses, fetch.allow_local_files) == (False, False)
    opened = ingest_fetch(
        runner.build(
            {
                **base,
                "allow_private_addresses": True,
                "allowed_networks": ["10.8.0.0/16"],
                "allowed_hosts": ["covers.example.com"],
                "allow_local_files": True,
                "covers_root": "gs://bucket/covers",
            }
        )
    )
    assert opened.allow_private_addresses and opened.allow_local_files
    assert opened.allowed_networks == ("10.8.0.0/16",)
    assert opened.allowed_hosts == ("covers.example.com",)
    assert opened.covers_root == "gs://bucket/covers"
    with pytest.raises(ValueError, match="10.8.0.0/99"):
        runner.build({**base, "allowed_networks": ["10.8.0.0/99"]})


@pytest.mark.parametrize(
    "key, value, accepted",
    [
        ("categories", -1, "an integer at least 2"),
        ("per_class", 0, "an integer at least 1"),
        ("epochs", 2.5, "an integer at least 1"),
        ("batch_size", "64", "an integer at least 1 and at most 65536"),
        ("accuracy_floor", -0.5, "a number at least 0"),
    ],
)
def test_a_numeric_config_key_out_of_range_stops_the_compile(key, value, accepted):
    base = {"pipeline_root": "gs://bucket/bookcover", "books_csv": "gs://bucket/data/b.csv"}
    with pytest.raises(ValueError, match=f"config key '{key}': .*expected {accepted}$"):
        runner.build({**base, key: value})


def test_the_compile_command_says_a_bad_setting_in_one_line(tmp_path):
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps({"image": IMAGE, "pipeline_root": "gs://b/r",
                                  "books_csv": "gs://b/d.csv", "per_class": 0}))  # fmt: skip
    with pytest.raises(SystemExit) as e:
        runner.main(["--config", str(config), "--output", str(tmp_path / "p.yaml")])
    assert str(e.value.code) == (
        f"kubeflow.runner: {config}: config key 'per_class': 0: expected an integer at least 1"
    )


def test_an_unknown_config_key_stops_the_compile_with_the_known_ones(tmp_path):
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps({"image": IMAGE, "pipeline_root": "gs://b/r",
                                  "books_csv": "gs://b/d.csv", "per_clas": 50}))  # fmt: skip
    with pytest.raises(SystemExit) as e:
        runner.main(["--config", str(config), "--output", str(tmp_path / "p.yaml")])
    message = str(e.value.code)
    assert message.startswith(f"kubeflow.runner: {config}: unknown config key(s) 'per_clas'; ")
    assert "known: image, pipeline_root" in message and "per_class" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="missing config key.*'books_csv'"):
        runner.build({"pipeline_root": "gs://b/r"})
    with pytest.raises(ValueError, match="unknown model option 'dropuot'"):
        runner.build({"pipeline_root": "gs://b/r", "books_csv": "gs://b/d.csv",
                      "model_options": {"dropuot": 0.5}})  # fmt: skip


def test_every_ingestion_setting_is_settable_from_the_config(tmp_path):
    """The cluster config reaches each IngestSettings and FetchConfig field the local flags do;
    min_books counts the categories from the CSV itself, as the local runner does."""
    import csv

    books = tmp_path / "books_data.csv"
    with open(books, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Title", "image", "categories"])
        for k in range(7):  # 4 of 'Fiction', 3 of 'History'
            category = "Fiction" if k < 4 else "History"
            writer.writerow([f"Book {k}", f"http://covers.example/{k}.jpg", f"['{category}']"])
    bookcover_pipeline = runner.build(
        {
            "pipeline_root": "gs://bucket/bookcover",
            "books_csv": str(books),
            "min_books": 3,
            "per_class": 3,
            "balance": False,
            "max_failure_share": 0.2,
            "connections": 7,
            "download_deadline": 12.5,
            "cover_format": "PNG",
        }
    )
    (example_gen,) = [c for c in bookcover_pipeline.components if c.id == "CoverExampleGen"]
    from components.cover_example_gen.settings import IngestSettings

    ingest = IngestSettings.from_dict(json.loads(example_gen.exec_properties["ingest_settings"]))
    assert (ingest.top_k, ingest.min_books, ingest.per_class) == (None, 3, 3)
    assert (ingest.balance, ingest.max_failure_share) == (False, 0.2)
    assert (ingest.fetch.connections, ingest.fetch.deadline_s) == (7, 12.5)
    assert ingest.fetch.cover_format == "PNG"
    (transform,) = [c for c in bookcover_pipeline.components if c.id == "Transform"]
    custom_config = transform.exec_properties["custom_config"]
    custom_config = json.loads(custom_config) if isinstance(custom_config, str) else custom_config
    assert custom_config["num_classes"] == 2


def test_the_example_config_compiles_with_every_key_it_shows(tmp_path):
    import os

    example = os.path.join(os.path.dirname(runner.__file__), "config.example.json")
    with open(example) as f:
        config = json.load(f)
    assert set(config) == set(runner.CLUSTER_KEYS + runner.INGEST_KEYS + runner.TRAINING_KEYS)
    assert runner.main(["--config", example, "--output", str(tmp_path / "p.yaml")])


def test_parallel_trials_reach_the_tuner_as_tune_args_and_nothing_else(tmp_path):
    config = {
        "image": IMAGE,
        "pipeline_root": "gs://bucket/bookcover",
        "books_csv": "gs://bucket/data/books_data.csv",
        "beam_pipeline_args": BEAM_ARGS,
    }
    for name in ("plain", "parallel", "zero"):
        (tmp_path / name).mkdir()
    plain, _ = compile_config(config, tmp_path / "plain")
    spec, _ = compile_config({**config, "parallel_trials": 4}, tmp_path / "parallel")

    def tuner_parameters(compiled) -> dict:
        task = compiled.root.dag.tasks["Tuner"].inputs.parameters
        return {name: value.runtime_value.constant_value for name, value in task.items()}

    parallel = tuner_parameters(spec)
    assert json.loads(parallel["tune_args"].string_value) == {"num_parallel_trials": 4}
    assert "tune_args" not in tuner_parameters(plain)
    # tuner_fn reads the same grid settings either way.
    assert parallel["custom_config"] == tuner_parameters(plain)["custom_config"]
    with pytest.raises(SystemExit, match="'parallel_trials': 0: expected an integer at least 1"):
        compile_config({**config, "parallel_trials": 0}, tmp_path / "zero")


def test_classify_uncategorised_adds_the_catalogue_step_after_the_push(tmp_path):
    config = {
        "image": IMAGE,
        "pipeline_root": "gs://bucket/bookcover",
        "books_csv": "gs://bucket/data/books_data.csv",
        "beam_pipeline_args": BEAM_ARGS,
        "classify_uncategorised": True,
    }
    spec, deployment = compile_config(config, tmp_path)
    tasks = spec.root.dag.tasks
    assert set(tasks["ClassifyCatalogue"].dependent_tasks) == {"Pusher"}
    # The report waits for the catalogue and shows its counts and covers.
    assert "ClassifyCatalogue" in tasks["ReportGen"].dependent_tasks
    container = container_of(spec, deployment, "ClassifyCatalogue")
    assert container.image == IMAGE
    assert all(arg in container.args for arg in BEAM_ARGS)
    (step,) = [c for c in runner.build(config).components if c.id == "ClassifyCatalogue"]
    settings = json.loads(step.exec_properties["settings"])
    # The cluster's URL policy holds for the catalogue's covers as for ingestion's.
    assert settings["fetch"]["allow_private_addresses"] is False
    assert step.exec_properties["books_csv"] == "gs://bucket/data/books_data.csv"


def test_pretraining_compiles_to_two_trainer_steps_the_second_fine_tuning_the_first(tmp_path):
    config = {
        "image": IMAGE,
        "pipeline_root": "gs://bucket/bookcover",
        "books_csv": "gs://bucket/data/books_data.csv",
        "beam_pipeline_args": BEAM_ARGS,
        "pretrain_epochs": 7,
        "epochs": 40,
    }
    spec, deployment = compile_config(config, tmp_path)
    tasks = spec.root.dag.tasks
    assert set(tasks["PretrainTrainer"].dependent_tasks) == {
        "CoverExampleGen",
        "Transform",
        "Tuner",
    }
    assert "PretrainTrainer" in tasks["Trainer"].dependent_tasks
    base = tasks["Trainer"].inputs.artifacts["base_model"].task_output_artifact
    assert (base.producer_task, base.output_artifact_key) == ("PretrainTrainer", "model")
    assert container_of(spec, deployment, "PretrainTrainer").image == IMAGE
    steps = {c.id: c for c in runner.build(config).components}
    pretrain = steps["PretrainTrainer"].exec_properties
    assert json.loads(pretrain["train_args"]) == {"splits": ["train", "pretrain"]}
    pretrain_config = json.loads(pretrain["custom_config"])
    assert pretrain_config["pretrain_epochs"] == 7 and "train_epochs" not in pretrain_config
    assert pretrain_config["model_code"] == pipeline.model_code_fingerprint()
    # CoverExampleGen writes the split; the gate's statistics leave it out.
    ingest = json.loads(steps["CoverExampleGen"].exec_properties["ingest_settings"])
    assert ingest["pretrain"] is True
    assert steps["StatisticsGen"].exec_properties["exclude_splits"] == '["pretrain"]'
    # Without pretraining: no such step, no such split.
    plain = {c.id: c for c in runner.build({**config, "pretrain_epochs": 0}).components}
    assert "PretrainTrainer" not in plain
    assert (
        json.loads(plain["CoverExampleGen"].exec_properties["ingest_settings"])["pretrain"] is False
    )
    with pytest.raises(SystemExit, match="pretrain_epochs"):
        compile_config({**config, "pretrain_epochs": -1}, tmp_path)


def test_ensemble_members_reach_the_trainer_alone(tmp_path):
    config = {
        "image": IMAGE,
        "pipeline_root": "gs://bucket/bookcover",
        "books_csv": "gs://bucket/data/books_data.csv",
        "ensemble_members": 3,
    }
    steps = {c.id: c for c in runner.build(config).components}
    assert json.loads(steps["Trainer"].exec_properties["custom_config"])["ensemble_members"] == 3
    # Not the Tuner's: more members do not rerun the search.
    assert "ensemble_members" not in json.loads(steps["Tuner"].exec_properties["custom_config"])
    with pytest.raises(SystemExit, match="ensemble_members"):
        compile_config({**config, "ensemble_members": 0}, tmp_path)
