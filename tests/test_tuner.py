"""tuner_fn and the trial table: the grid is exactly the configured product, each trial
early-stopped, every trial's epochs and curves recorded."""

import csv
import itertools
import json

import numpy as np
import pytest
from tfx import v1 as tfx

from components import grid_tuner
from models import trainer
from tests import tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

LEARNING_RATES = [1e-3, 5e-4]
FIRST_FILTERS = [8, 12]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuner")
    tiny_model.build_transform_graph(str(root))
    records = tiny_model.write_tfrecords(str(root / "train.gz"), tiny_model.raw_rows(48))
    return root, records


def fn_args(root, records, **config):
    return tfx.components.FnArgs(
        train_files=[records],
        eval_files=[records],
        transform_graph_path=str(root / "graph"),
        working_dir=str(root / "work"),
        custom_config={
            "learning_rates": LEARNING_RATES,
            "first_filters": FIRST_FILTERS,
            "batch_size": 8,
            "tuner_epochs": 3,
            "tuner_patience": 1,
            **config,
        },
    )


@pytest.fixture(scope="module")
def searched(data):
    root, records = data
    result = trainer.tuner_fn(fn_args(root, records))
    result.tuner.search(**result.fit_kwargs)
    return result


def test_search_space_is_the_grid(searched):
    space = {p.name: p.values for p in searched.tuner.oracle.hyperparameters.space if p.values}
    assert space["learning_rate"] == LEARNING_RATES
    assert space["first_filters"] == FIRST_FILTERS
    assert searched.tuner.oracle.max_trials == 4
    stop = searched.fit_kwargs["callbacks"][0]
    assert (stop.monitor, stop.patience) == ("val_loss", 1)
    assert searched.tuner.oracle.objective.name == "val_accuracy"


def test_every_grid_point_ran_once_and_its_epochs_are_recorded(searched, tmp_path):
    rows = grid_tuner.trial_table(searched.tuner)
    assert sorted((r["learning_rate"], r["first_filters"]) for r in rows) == sorted(
        itertools.product(LEARNING_RATES, FIRST_FILTERS)
    )
    for row in rows:
        assert row["status"] == "COMPLETED"
        assert 1 <= row["epochs_run"] <= 3
        assert 1 <= row["best_epoch"] <= row["epochs_run"]
        assert {len(v) for v in row["curves"].values()} == {row["epochs_run"]}
        assert row["score"] == max(row["curves"]["val_accuracy"])

    grid_tuner.write_trial_table(rows, str(tmp_path))
    with open(tmp_path / grid_tuner.TRIALS_CSV) as f:
        table = list(csv.DictReader(f))
    assert [int(r["epochs_run"]) for r in table] == [r["epochs_run"] for r in rows]
    assert "curves" not in table[0]
    assert json.loads((tmp_path / grid_tuner.TRIALS_JSON).read_text()) == rows


def test_class_weights_travel_in_the_data_as_sample_weights(tmp_path):
    root = tmp_path
    _, output = tiny_model.build_transform_graph(str(root))
    # Unbalanced: 12 Art, 12 History, 4 Poetry covers.
    rows = [r for i, r in enumerate(tiny_model.raw_rows(36)) if i % 3 != 2 or i < 12]
    records = tiny_model.write_tfrecords(str(root / "train.gz"), rows)
    plain = trainer.tuner_fn(
        fn_args(root, records, model_options={"class_weights": False, "mixup": 0.0})
    )
    assert len(plain.tuner.trial_data()[0].element_spec) == 2
    weighted = trainer.tuner_fn(
        fn_args(root, records, model_options={"class_weights": True, "mixup": 0.0})
    )
    assert "class_weight" not in weighted.fit_kwargs
    per_category = {"Art": 28 / 36, "History": 28 / 36, "Poetry": 28 / 12}  # total/(3 x n)
    vocabulary = [v.decode() for v in output.vocabulary_by_name("category")]
    expected = np.array([per_category[name] for name in vocabulary])
    seen = 0
    for _, labels, weights in weighted.tuner.trial_data()[0]:
        np.testing.assert_allclose(weights.numpy(), labels.numpy() @ expected, rtol=1e-6)
        seen += len(weights)
    assert seen == 28


def test_tuner_datasets_run_without_tf_data_autotuning(searched):
    for dataset in searched.tuner.trial_data():
        assert dataset.options().autotune.enabled is False


def test_each_trial_reads_the_same_examples_in_the_same_order(searched):
    """A trial's data is made afresh and read in a fixed order, so what it scores depends
    on its values alone: not on the trials before it, nor on the worker that runs it."""

    def images(dataset) -> list:
        return [batch[0].numpy() for batch in dataset]

    first = searched.tuner.trial_data()[0]
    images(first)  # one epoch read, as a trial before the next would
    again, once_more = images(first), images(searched.tuner.trial_data()[0])
    fresh = images(searched.tuner.trial_data()[0])
    assert [b.shape for b in fresh] == [b.shape for b in once_more] and len(fresh) > 1
    for made, remade in zip(fresh, once_more, strict=True):
        np.testing.assert_array_equal(made, remade)
    # A dataset read again reshuffles (each epoch of a trial sees a new order).
    assert any(not np.array_equal(a, b) for a, b in zip(again, fresh, strict=True))


def test_mixup_carries_the_class_weights_in_the_data(data):
    root, records = data
    mixed = trainer.tuner_fn(
        fn_args(root, records, model_options={"class_weights": True, "mixup": 0.2})
    )
    assert "class_weight" not in mixed.fit_kwargs
    images, labels, weights = next(iter(mixed.tuner.trial_data()[0]))
    assert images.shape[1:] == (150, 100, 3) and labels.shape[1:] == (3,)
    assert weights.shape == (labels.shape[0],)


def test_early_stopping_only_where_the_schedule_has_no_set_end():
    from models import model

    for schedule in ("constant", "plateau"):
        hp = model.default_hyperparameters(options={"lr_schedule": schedule})
        (stop,) = trainer.early_stopping(hp, patience=7)
        assert (stop.monitor, stop.mode, stop.patience) == ("val_accuracy", "max", 7)
    hp = model.default_hyperparameters(options={"lr_schedule": "cosine"})
    assert trainer.early_stopping(hp, patience=7) == []
