"""An ensemble of networks exported as one model: the Trainer trains each from its own
seed, and every signature answers their mean probabilities, in every loader."""

import json
import os
import shutil
import subprocess
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import levers, quality, titles
from models import export, history, inputs, model, trainer, tuning
from models.settings import TrainingSettings
from reporting import html_report
from reporting.run_artifacts import RunArtifacts
from tests import images, run_fn_job, saved_model_loaders, tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

COVERS = [images.jpeg(color=color) for color in tiny_model.COLORS] + [
    images.png(size=(300, 450), color=(200, 200, 40, 255))
]


def served(export_dir: str, loader=saved_model_loaders.run_tf2) -> np.ndarray:
    feeds = {"images": np.array(COVERS, dtype=object)}
    return loader(export_dir, "serving_default", feeds)["probabilities"]


def built(classes: int = len(tiny_model.CATEGORIES)) -> keras.Model:
    return model.build_model(model.default_hyperparameters((1e-3,), (8,)), classes)


def trained(output, records: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    cnn = built()
    data = inputs.input_fn([records], output, batch_size=4, shuffle=True)
    cnn.fit(data, epochs=2, verbose=0)
    return cnn


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two networks from different seeds, each exported alone, and their ensemble."""
    out = tmp_path_factory.mktemp("ensemble")
    _, output = tiny_model.build_transform_graph(str(out))
    records = tiny_model.write_tfrecords(str(out / "train.gz"), tiny_model.raw_rows())
    members = [trained(output, records, seed) for seed in (1, 2)]
    dirs = {}
    for name, exported_model in (("first", members[0]), ("second", members[1])):
        dirs[name] = str(out / name)
        export.export_model(exported_model, output, dirs[name])
    dirs["ensemble"] = str(out / "ensemble")
    export.export_model(members, output, dirs["ensemble"])
    return dirs, output, records


def test_an_ensemble_serves_its_members_mean_probabilities(exported):
    dirs, _, _ = exported
    first, second, ensemble = (served(dirs[name]) for name in ("first", "second", "ensemble"))
    assert not np.allclose(first, second, atol=1e-3)  # two seeds, two networks
    np.testing.assert_allclose(ensemble, (first + second) / 2, atol=1e-6)
    np.testing.assert_allclose(ensemble.sum(axis=1), 1.0, atol=1e-5)


def test_tf_serving_s_loader_restores_every_member(exported, tmp_path):
    """A TF1 Session (TF Serving's restore path) and saved_model_cli find every member's
    variables and answer as TF2's loader does."""
    dirs, _, _ = exported
    feeds = {"images": np.array(COVERS, dtype=object)}
    tf2 = saved_model_loaders.run_tf2(dirs["ensemble"], "serving_default", feeds)
    tf1 = saved_model_loaders.run_tf1(dirs["ensemble"], "serving_default", feeds)
    cli = saved_model_loaders.run_cli(dirs["ensemble"], "serving_default", feeds, str(tmp_path))
    saved_model_loaders.assert_same_outputs(tf2, tf1)
    saved_model_loaders.assert_same_outputs(tf2, cli)


def test_members_that_answer_different_classes_are_refused():
    with pytest.raises(ValueError, match="must take and answer alike"):
        export.members_of([built(), built(classes=4)])
    with pytest.raises(ValueError, match="at least one"):
        export.members_of([])


def test_the_trainer_trains_each_member_from_its_own_seed_and_exports_their_mean(tmp_path):
    tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(24))
    settings = {
        "train_epochs": 2,
        "batch_size": 8,
        "learning_rates": [1e-3],
        "first_filters": [8],
        "mixed_precision": "float32",
        "ensemble_members": 2,
    }
    out = tmp_path / "out"
    job = run_fn_job.describe([records], [records], str(tmp_path / "graph"), str(out), **settings)
    done = subprocess.run(
        run_fn_job.command(job, str(tmp_path / "job.json")), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Trainer (member 2 of 2)" in done.stderr
    run_dirs = [out / "run", out / "run" / f"{history.MEMBER_DIR_PREFIX}2"]
    assert history.later_member_dirs(str(out / "run")) == [str(run_dirs[1])]
    histories = [json.loads((d / "history.json").read_text()) for d in run_dirs]
    assert histories[0]["loss"] != histories[1]["loss"]  # not the same network twice
    # The run's report shows every member's training.
    report = tmp_path / "report"
    page = html_report.write_report(RunArtifacts(model_run=str(out / "run")), {}, str(report))
    text = open(page).read()
    assert "averages the probabilities of 2 networks" in text and "Member 2" in text
    assert {"training_curves.png", "member_2_training_curves.png"} <= set(os.listdir(report))
    assert os.listdir(out / "backup") == []  # both jobs' backups gone once exported
    # Each member rebuilt from its kept weights and exported alone: the Trainer's model
    # answers their mean.
    full = TrainingSettings(**settings)
    hp = trainer.hyperparameters_from(types.SimpleNamespace(hyperparameters=None), full)
    output = trainer.tft.TFTransformOutput(str(tmp_path / "graph"))
    alone = []
    for i, run_dir in enumerate(run_dirs):
        cnn = model.build_model(hp, len(tiny_model.CATEGORIES))
        cnn.load_weights(str(run_dir / trainer.BEST_WEIGHTS))
        export.export_model(cnn, output, str(tmp_path / f"member{i}"))
        alone.append(served(str(tmp_path / f"member{i}")))
    np.testing.assert_allclose(served(str(out / "serving")), np.mean(alone, axis=0), atol=1e-6)
    scored_by_the_quality_benchmark(tmp_path, out, records, hp)


def scored_by_the_quality_benchmark(tmp_path, out, records: str, hp) -> None:
    """benchmarks.quality scores each member alone and the running mean in the members'
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
    members = quality.members_scored(run)
    assert [m["member"] for m in members] == [1, 2]
    assert members[0]["running_top_1"] == members[0]["top_1"]
    test = titles.read_examples(str(tmp_path / "examples"), "test", with_images=True)
    output = trainer.tft.TFTransformOutput(str(tmp_path / "graph"))
    classes = inputs.category_names(output)
    ensemble = levers.probabilities(
        tf.saved_model.load(str(out / "serving")), test["images"], classes
    )
    assert (
        members[-1]["running_top_1"]
        == titles.scores(ensemble, classes, test["categories"])["top_1"]
    )


def test_an_ensemble_s_first_member_is_the_single_network_s_job(tmp_path):
    """A run killed while training one network resumes as the first of several; the
    later members are jobs of their own."""
    fn_args = types.SimpleNamespace(
        train_files=["t"], eval_files=["e"], transform_graph_path="g", base_model=None
    )
    one, three = TrainingSettings(), TrainingSettings(ensemble_members=3)
    single = trainer.backup_dir_for("b", fn_args, {"lr": 1}, one)
    assert trainer.backup_dir_for("b", fn_args, {"lr": 1}, three, member=0) == single
    later = {trainer.backup_dir_for("b", fn_args, {"lr": 1}, three, member=m) for m in (1, 2)}
    assert len(later) == 2 and single not in later


def test_ensemble_members_must_be_a_positive_integer():
    assert TrainingSettings().ensemble_members == 1
    for wrong in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="ensemble_members"):
            TrainingSettings(ensemble_members=wrong)
    # The Tuner does not read it (changing it does not rerun the search), nor pretraining.
    assert "ensemble_members" not in TrainingSettings().for_tuner()
    assert "ensemble_members" not in TrainingSettings().for_pretrainer()
    assert TrainingSettings(ensemble_members=3).for_trainer()["ensemble_members"] == 3


def test_every_member_s_seed_is_one_numpy_takes():
    values = {"learning_rate": 1e-3, "first_filters": 16}
    first = tuning.trial_seed(values)
    assert tuning.trial_seed(values, 0) == first
    assert tuning.trial_seed(values, 1) != first
    # Past 2**32 - 1 (where keras.utils.set_random_seed would refuse it), it wraps.
    assert tuning.trial_seed(values, 2**32 - first) == 0
    keras.utils.set_random_seed(tuning.trial_seed(values, 2**32 - first + 5))
