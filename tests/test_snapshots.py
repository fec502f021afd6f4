"""Snapshots: restart cycles after a network's training, each from the network before,
every cycle's network joining the exported ensemble."""

import json
import os
import shutil
import subprocess
import types

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import levers, quality, titles
from models import export, history, hyperparameters, inputs, model, trainer
from models.settings import TrainingSettings
from reporting import html_report
from reporting.run_artifacts import RunArtifacts
from tests import run_fn_job, tiny_model
from tests.test_ensemble import served

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

SETTINGS = {
    "train_epochs": 2,
    "batch_size": 8,
    "learning_rates": [1e-3],
    "first_filters": [8],
    "mixed_precision": "float32",
}


def test_the_trainer_exports_each_network_with_its_snapshots_as_one_model(tmp_path):
    tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(24))
    settings = {**SETTINGS, "snapshots": 2, "snapshot_epochs": 1}
    out = tmp_path / "out"
    job = run_fn_job.describe([records], [records], str(tmp_path / "graph"), str(out), **settings)
    done = subprocess.run(
        run_fn_job.command(job, str(tmp_path / "job.json")), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Trainer (snapshot 2 of 2): epoch 1/1" in done.stderr
    run_dirs = [out / "run", out / "run" / "snapshot_1", out / "run" / "snapshot_2"]
    assert history.snapshot_dirs(str(out / "run")) == [str(d) for d in run_dirs[1:]]
    histories = [json.loads((d / "history.json").read_text()) for d in run_dirs]
    assert [len(h["loss"]) for h in histories] == [2, 1, 1]
    assert os.listdir(out / "backup") == []  # every job's backup gone once exported
    # The report counts the snapshots among the networks and lists them.
    page = html_report.write_report(
        RunArtifacts(model_run=str(out / "run")), {}, str(tmp_path / "report")
    )
    text = open(page).read()
    assert "averages the probabilities of 3 networks" in text
    assert "<table class='snapshots'>" in text and "<td>2</td><td>1</td>" in text
    # The exported model answers the mean of the three, each rebuilt from its kept weights.
    hp = trainer.hyperparameters_from(
        types.SimpleNamespace(hyperparameters=None), TrainingSettings(**settings)
    )
    output = trainer.tft.TFTransformOutput(str(tmp_path / "graph"))
    alone = []
    for i, run_dir in enumerate(run_dirs):
        cnn = model.build_model(hp, len(tiny_model.CATEGORIES))
        cnn.load_weights(str(run_dir / trainer.BEST_WEIGHTS))
        export.export_model(cnn, output, str(tmp_path / f"network{i}"))
        alone.append(served(str(tmp_path / f"network{i}")))
    np.testing.assert_allclose(served(str(out / "serving")), np.mean(alone, axis=0), atol=1e-6)
    assert not np.allclose(alone[0], alone[1], atol=1e-4)  # the cycle trained
    scored_by_the_quality_benchmark(tmp_path, out, records, hp)


def scored_by_the_quality_benchmark(tmp_path, out, records: str, hp) -> None:
    """benchmarks.quality scores each network alone and the running mean, in training
    order: the last mean is the exported model's accuracy."""
    (tmp_path / "examples" / "Split-test").mkdir(parents=True)
    shutil.copy(records, tmp_path / "examples" / "Split-test" / "data.gz")
    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "best_hyperparameters.txt").write_text(json.dumps(hp.get_config()))
    run = types.SimpleNamespace(
        model_run=str(out / "run"),
        best_hyperparameters=str(tmp_path / "hp"),
        transform_graph=str(tmp_path / "graph"),
        examples=str(tmp_path / "examples"),
    )
    networks = quality.networks_scored(run)
    assert [(n["member"], n["snapshot"]) for n in networks] == [(1, 0), (1, 1), (1, 2)]
    test = titles.read_examples(str(tmp_path / "examples"), "test", with_images=True)
    output = trainer.tft.TFTransformOutput(str(tmp_path / "graph"))
    classes = inputs.category_names(output)
    ensemble = levers.probabilities(
        tf.saved_model.load(str(out / "serving")), test["images"], classes
    )
    expected = titles.scores(ensemble, classes, test["categories"])["top_1"]
    assert networks[-1]["running_top_1"] == expected
    assert networks[0]["running_top_1"] == networks[0]["top_1"]


def test_a_snapshot_starts_from_the_network_before_it(tmp_path):
    """At a vanishing learning rate, a cycle ends where its start was: its trainable
    weights are the start's, not a fresh initialisation's."""
    tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(16))
    settings = TrainingSettings(**{**SETTINGS, "learning_rates": [1e-9]}, snapshots=1)
    output = trainer.tft.TFTransformOutput(str(tmp_path / "graph"))
    hp = trainer.search_space(settings)
    classes = len(tiny_model.CATEGORIES)
    start = model.build_model(hp, classes)
    fn_args = types.SimpleNamespace(
        train_files=[records],
        eval_files=[records],
        transform_graph_path=str(tmp_path / "graph"),
        model_run_dir=str(tmp_path / "run"),
        base_model=None,
    )
    job = trainer.Job(hp, classes, [2] * classes, settings.train_epochs)
    snapshot = trainer.snapshot_job(job, 1, settings, start)
    cnn, _ = trainer.train(fn_args, settings, output, snapshot)
    for found, wanted in zip(cnn.trainable_weights, start.trainable_weights, strict=True):
        np.testing.assert_allclose(found.numpy(), wanted.numpy(), atol=1e-5)
    fresh = model.build_model(hp, classes)
    pairs = zip(fresh.trainable_weights, cnn.trainable_weights, strict=True)
    assert not all(np.allclose(a.numpy(), b.numpy()) for a, b in pairs)
    assert os.path.isfile(tmp_path / "run" / "snapshot_1" / "history.json")


def test_a_snapshot_cycle_is_the_schedule_in_small():
    settings = TrainingSettings(snapshots=3, snapshot_epochs=5)
    hp = trainer.search_space(settings)
    job = trainer.Job(hp, 12, [1] * 12, settings.train_epochs, member=1)
    first, second = (trainer.snapshot_job(job, s, settings, None) for s in (1, 2))
    share = hyperparameters.SNAPSHOT_RATE_SHARE
    assert first.hp.get("learning_rate") == pytest.approx(hp.get("learning_rate") * share)
    assert job.hp.get("learning_rate") == hp.get("learning_rate")  # the network's untouched
    assert (first.epochs, first.member, first.snapshot) == (5, 1, 1)
    assert first.step == "Trainer (snapshot 1 of 3)"
    assert len({job.seed(), first.seed(), second.seed()}) == 3  # new draws each cycle


def test_a_network_s_job_is_the_same_with_or_without_snapshots(tmp_path):
    """A run killed while training the network resumes it when snapshots were added;
    each cycle is a job of its own, and so is another cycle length."""
    fn_args = types.SimpleNamespace(
        train_files=["t"], eval_files=["e"], transform_graph_path="g", base_model=None
    )
    none, two = TrainingSettings(), TrainingSettings(snapshots=2)
    network = trainer.backup_dir_for("b", fn_args, {"lr": 1}, none)
    assert trainer.backup_dir_for("b", fn_args, {"lr": 1}, two) == network
    cycles = {trainer.backup_dir_for("b", fn_args, {"lr": 1}, two, snapshot=s) for s in (1, 2)}
    longer = TrainingSettings(snapshots=2, snapshot_epochs=9)
    cycles.add(trainer.backup_dir_for("b", fn_args, {"lr": 1}, longer, snapshot=1))
    assert len(cycles) == 3 and network not in cycles


def test_snapshot_settings_are_checked_and_reach_the_trainer_alone():
    assert TrainingSettings().snapshots == hyperparameters.SNAPSHOTS == 0
    for wrong in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="snapshots"):
            TrainingSettings(snapshots=wrong)
    with pytest.raises(ValueError, match="snapshot_epochs"):
        TrainingSettings(snapshot_epochs=0)
    for key in ("snapshots", "snapshot_epochs"):
        assert key not in TrainingSettings().for_tuner()
        assert key not in TrainingSettings().for_pretrainer()
    assert TrainingSettings(snapshots=3).for_trainer()["snapshots"] == 3
