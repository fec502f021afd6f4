"""Pretraining on every category's covers, then fine-tuning through TFX's base_model."""

import glob
import json
import os

import numpy as np
import pytest

import local_runner
from components import books_csv
from models import model, trainer
from pipeline import embedded_data
from tests import http_covers
from tests.pipeline_runs import TINY_TRAINING


def table_of(counts: dict[str, int]) -> list[books_csv.CategoryCount]:
    import collections

    return books_csv.category_table(collections.Counter(counts))


def test_pretraining_takes_what_the_selection_left_of_the_largest_categories_up_to_per_class():
    table = table_of({"A": 50, "B": 30, "C": 12, "D": 9, "E": 11})
    selected = {"A": 20, "B": 20}
    assert books_csv.pretraining_quotas(table, selected, 25, 10, 100) == {
        "A": 25,  # 30 left, up to per_class
        "B": 10,
        "C": 12,
        "E": 11,  # D has fewer than min_books
    }
    assert books_csv.pretraining_quotas(table, selected, None, 10, 2) == {"A": 30, "B": 10}


def test_the_selection_is_the_same_with_and_without_pretraining(tmp_path):
    csv_path = embedded_data.generate(str(tmp_path), categories=5, per_category=30)
    plain = books_csv.select_books(csv_path, 3, None, 12, seed=42, balance=False)
    pool = books_csv.PretrainPool(min_books=10, max_categories=100)
    both = books_csv.select_books(csv_path, 3, None, 12, seed=42, balance=False, pretrain=pool)
    assert [b.row for b in both.books] == [b.row for b in plain.books]
    assert not {b.row for b in both.books} & {b.row for b in both.pretrain_books}
    left = {c: sum(b.category == c for b in both.pretrain_books) for c in both.categories}
    assert left == dict.fromkeys(plain.categories, 12)  # 18 left of 30, up to per_class
    others = {b.category for b in both.pretrain_books} - set(plain.categories)
    assert len(others) == 2


def small_network(classes: int) -> tuple:
    hp = model.default_hyperparameters((1e-3,), (4,))
    return hp, model.build_model(hp, classes)


def test_the_fine_tuned_network_starts_from_every_pretrained_layer_but_the_logits(tmp_path):
    hp, pretrained = small_network(7)
    for layer in pretrained.layers:  # distinct from any fresh initialisation
        layer.set_weights([w + 0.5 for w in layer.get_weights()])
    trainer.save_pretrained(pretrained, hp, [f"c{i}" for i in range(7)], [1] * 7, str(tmp_path))
    _, fine_tuned = small_network(4)
    fresh_logits = fine_tuned.get_layer("logits").get_weights()

    trainer.start_from_pretrained(fine_tuned, str(tmp_path))

    source = {layer.name: layer for layer in pretrained.layers}
    taken = [layer for layer in fine_tuned.layers if layer.weights and layer.name != "logits"]
    assert len(taken) > 10
    for layer in taken:
        for mine, theirs in zip(layer.get_weights(), source[layer.name].get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    for mine, fresh in zip(fine_tuned.get_layer("logits").get_weights(), fresh_logits, strict=True):
        np.testing.assert_array_equal(mine, fresh)


def test_a_network_that_shares_no_layer_is_refused():
    _, target = small_network(3)
    import keras

    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="other")])
    with pytest.raises(ValueError, match="shares no layer"):
        model.take_weights(target, other)


@pytest.mark.pipeline
def test_the_pipeline_pretrains_on_every_category_and_fine_tunes_on_the_selected(tmp_path):
    with http_covers.serving(str(tmp_path / "covers")) as url:
        os.makedirs(tmp_path / "covers")
        csv_path = embedded_data.generate(
            str(tmp_path / "covers"), categories=6, per_category=16, image_url_prefix=url
        )
        summary = local_runner.main(
            ["--books-csv", csv_path, "--categories", "4", "--per-class", "12", *TINY_TRAINING]
            + ["--pretrain-epochs", "1", "--output-dir", str(tmp_path / "out")]
        )
    statuses = {name: c["status"] for name, c in summary["components"].items()}
    assert statuses["PretrainTrainer"] == statuses["Trainer"] == "executed", statuses
    (saved,) = glob.glob(str(tmp_path / "out/pipeline/PretrainTrainer/model/*/*/pretrained.json"))
    with open(saved) as f:
        pretrained = json.load(f)
    # The 4 selected categories (their train split and the 4 covers left of each) and
    # the 2 others: every cover of the train and pretrain splits, labelled.
    assert len(pretrained["classes"]) == 6
    (ingested,) = glob.glob(
        str(tmp_path / "out/pipeline/CoverExampleGen/category_analysis/*/ingest_summary.json")
    )
    with open(ingested) as f:
        examples = json.load(f)["examples"]
    assert len(examples["pretrain"]) == 6 and sum(examples["pretrain"].values()) == 4 * 4 + 2 * 12
    assert sum(pretrained["counts"]) == sum(examples["train"].values()) + 4 * 4 + 2 * 12
    (log,) = glob.glob(str(tmp_path / "out/logs/*.log"))
    with open(log) as f:
        assert "started from the pretrained network's" in f.read()
    assert summary["blessed"] is not None


def test_the_selection_file_interleaves_categories(tmp_path):
    """Downloads are asked for in about its order, and a large selection's splits are
    written as they finish: books grouped by category would give grouped training files."""
    from components.cover_example_gen import analysis

    csv_path = embedded_data.generate(str(tmp_path), categories=3, per_category=40)
    selection = books_csv.select_books(csv_path, 3, None, None, seed=42, balance=False)
    path = str(tmp_path / "selected.jsonl")
    analysis.write_selection(selection.books, path)
    categories = [book["category"] for book in analysis.read_selection(path)]
    assert sorted(categories) == sorted(b.category for b in selection.books)
    changes = sum(a != b for a, b in zip(categories, categories[1:], strict=False))
    assert changes > len(categories) / 2  # grouped: 2 changes
