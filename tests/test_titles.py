"""The cover-and-title model (model option inputs=cover_title): the title tokens of the
Transform graph, the title branch, its signatures through every loader and client, and
the data check that stops a run of it whose titles are gone."""

import csv
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx import v1 as tfx

import local_runner
from bookcover import constants
from components.catalogue.inference import CoverModelHandler
from components.data_gate import checks
from models import inputs, model, predict, preprocessing, serving_client, settings
from pipeline import configs, embedded_data
from reporting import evaluation, run_artifacts
from tests import http_covers, saved_model_loaders, tiny_model
from tests.pipeline_runs import TINY_TRAINING
from tests.test_model_server import MODEL, model_server

ROWS = tiny_model.raw_rows(6)
COVERS = [row[constants.IMAGE_KEY][0] for row in ROWS]
TITLES = [row[constants.TITLE_KEY][0] for row in ROWS]
BOTH = constants.COVER_AND_TITLE_SIGNATURE


def words(title) -> list[str]:
    (tokens,) = preprocessing.title_tokens(tf.constant([title])).to_list()
    return [token.decode() for token in tokens]


def example(cover: bytes, title: bytes | None) -> bytes:
    feature = {constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[cover]))}
    if title is not None:
        feature[constants.TITLE_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[title])
        )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# --- Tokens, the title branch, mixup, settings (no pipeline) -----------------------------


def test_title_tokens_are_its_lower_case_words_and_their_character_grams():
    tokens = words("The Cat's HAT")
    assert tokens[:4] == ["the", "cat", "s", "hat"]
    assert set(tokens[4:]) == {
        *(" th", "the", "he ", " the", "the "),
        *(" ca", "cat", "at ", " cat", "cat "),
        " s ",
        *(" ha", "hat", " hat", "hat "),
    }


def test_a_title_is_cut_and_bytes_that_are_not_utf8_are_no_error():
    assert words(b"Caf\xe9 au lait")[:3] == ["caf", "au", "lait"]
    assert words("Café")[0] == "café"
    assert words("x" * 1000)[0] == "x" * constants.MAX_TITLE_CHARS
    assert words("é" * 1000 + " tail")[0] == "é" * constants.MAX_TITLE_CHARS
    assert words("") == [] and words(" -- ") == []


def fused_model(vocabulary_size: int = 10, **options) -> keras.Model:
    keras.utils.set_random_seed(3)
    options = {"inputs": "cover_title", "augment": False, **options}
    hp = model.default_hyperparameters((1e-3,), (8,), options)
    return model.build_model(hp, 3, title_vocabulary_size=vocabulary_size)


def some_examples(n: int = 8) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(0)
    features = {
        constants.IMAGE_KEY: rng.normal(size=(n, 150, 100, 3)).astype("float32"),
        constants.TITLE_TOKENS_KEY: rng.integers(0, 10, (n, constants.MAX_TITLE_TOKENS)),
    }
    return features, np.eye(3, dtype="float32")[np.arange(n) % 3]


def test_a_title_without_known_tokens_adds_nothing_to_the_cover_logits():
    fused = fused_model()
    parts = keras.Model(
        fused.inputs, [fused.get_layer("logits").output, fused.get_layer("probabilities").output]
    )
    images = np.random.default_rng(0).normal(size=(2, 150, 100, 3)).astype("float32")
    tokens = np.zeros((2, constants.MAX_TITLE_TOKENS), np.int64)
    cover_logits, probabilities = parts.predict(
        {constants.IMAGE_KEY: images, constants.TITLE_TOKENS_KEY: tokens}, verbose=0
    )
    np.testing.assert_allclose(probabilities, tf.nn.softmax(cover_logits).numpy(), atol=1e-6)
    tokens[:, :3] = [4, 5, 6]
    _, with_title = parts.predict(
        {constants.IMAGE_KEY: images, constants.TITLE_TOKENS_KEY: tokens}, verbose=0
    )
    assert np.abs(with_title - probabilities).max() > 1e-4


def test_the_cover_branch_alone_has_a_loss_of_its_own_in_training():
    features, labels = some_examples()
    cross_entropy = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    for weight in (0.0, 0.7):
        fused = fused_model(cover_loss=weight, fusion="joint")
        probabilities, cover = fused(features, training=True)
        loss = fused.compute_loss(features, labels, (probabilities, cover))
        expected = (
            cross_entropy(labels, probabilities)
            + weight * cross_entropy(labels, cover)
            + sum(fused.losses)
        )
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        assert weight == 0.0 or float(cross_entropy(labels, cover)) > 0.1
    # Served, it is one model with one output: the fused probabilities.
    served = fused.predict(features, verbose=0)
    assert served.shape == (8, 3)
    np.testing.assert_allclose(served, fused(features), atol=1e-5)
    parts = keras.Model(fused.inputs, fused.get_layer("cover_and_title").output)
    np.testing.assert_allclose(
        served, tf.nn.softmax(parts.predict(features, verbose=0)).numpy(), atol=1e-5
    )


def fused_loss_gradients(fused, layer: str) -> list:
    features, labels = some_examples()
    cross_entropy = keras.losses.CategoricalCrossentropy()
    with tf.GradientTape() as tape:
        probabilities, _ = fused(features, training=True)
        loss = cross_entropy(labels, probabilities)
    return tape.gradient(loss, fused.get_layer(layer).trainable_weights)


def test_residual_fusion_trains_the_cover_branch_by_its_own_loss_alone():
    joint = fused_model(cover_loss=1.0, fusion="joint")
    assert all(np.abs(g.numpy()).max() > 0 for g in fused_loss_gradients(joint, "logits"))
    residual = fused_model()  # the default fusion
    assert all(g is None for g in fused_loss_gradients(residual, "logits"))
    assert all(np.abs(g.numpy()).max() > 0 for g in fused_loss_gradients(residual, "title_logits"))
    # The cover's own loss still reaches it.
    features, labels = some_examples()
    with tf.GradientTape() as tape:
        loss = residual.compute_loss(features, labels, residual(features, training=True))
    (kernel, bias) = tape.gradient(loss, residual.get_layer("logits").trainable_weights)
    assert np.abs(kernel.numpy()).max() > 0
    with pytest.raises(ValueError, match="cover_loss"):
        fused_model(cover_loss=0.0)
    with pytest.raises(ValueError, match="cover_loss is a loss's weight"):
        fused_model(cover_loss=-1.0)


def test_the_title_model_reports_the_cover_models_metric_names():
    features, labels = some_examples()
    fused = fused_model(cover_loss=1.0)
    found = fused.fit(
        features, labels, validation_data=(features, labels), epochs=1, batch_size=4, verbose=0
    ).history
    assert set(found) == {
        f"{split}{name}"
        for split in ("", "val_")
        for name in ("loss", "accuracy", "top_3_accuracy", "cover_accuracy", "both_ways_accuracy")
    }
    # The cover branch's metrics, in validation too: each an accuracy, and the mean of both.
    assert found["val_both_ways_accuracy"][0] == pytest.approx(
        (found["val_accuracy"][0] + found["val_cover_accuracy"][0]) / 2
    )
    # The Trainer keeps the epoch best by it (a cover-only model's: by accuracy).
    for reads, metric in (("cover_title", "val_both_ways_accuracy"), ("cover", "val_accuracy")):
        hp = model.default_hyperparameters((1e-3,), (8,), {"inputs": reads})
        assert model.selection_metric(hp) == metric
    # The training loss has the cover's own term; the validation loss is the fused model's.
    assert found["loss"][0] > found["val_loss"][0]


def test_whole_titles_are_withheld_from_a_share_of_training_examples_only():
    bag = model.TitleBag(5, 4, drop_rate=0.5, seed=1)
    tokens = np.tile([[1, 2, 0]], (2000, 1))
    served = bag(tokens, training=False).numpy()
    trained = bag(tokens, training=True).numpy()
    withheld = np.all(trained == 0, axis=1)
    assert 0.45 < withheld.mean() < 0.55
    np.testing.assert_allclose(trained[~withheld], served[~withheld])
    assert not np.any(np.all(served == 0, axis=1))


def test_mixup_keeps_the_title_of_the_example_with_the_larger_share():
    n = 8
    features = {
        constants.IMAGE_KEY: tf.reshape(tf.range(n, dtype=tf.float32), [n, 1, 1, 1]),
        constants.TITLE_TOKENS_KEY: tf.tile(tf.range(n, dtype=tf.int64)[:, None], [1, 4]),
    }
    batches = tf.data.Dataset.from_tensors((features, tf.eye(n))).repeat(30)
    for mixed, labels in inputs.mix_batches(batches, alpha=0.2):
        labels = labels.numpy()
        dominant = np.argmax(labels, axis=1)
        titles = mixed[constants.TITLE_TOKENS_KEY].numpy()
        np.testing.assert_array_equal(titles, np.tile(dominant[:, None], [1, 4]))
        blended = mixed[constants.IMAGE_KEY].numpy().reshape(-1)
        np.testing.assert_allclose(blended, labels @ np.arange(n), atol=1e-5)


def test_the_inputs_option_takes_only_its_names():
    assert settings.check_model_option("inputs", "cover_title") == "cover_title"
    with pytest.raises(ValueError, match="inputs takes one of cover, cover_title; got 'title'"):
        settings.check_model_option("inputs", "title")


def test_the_rest_body_names_both_inputs_and_needs_a_title_per_image():
    body = serving_client.predict_request([b"a", b"b"], ["Poems", ""])
    assert body["signature_name"] == BOTH
    assert body["instances"] == [
        {"images": {"b64": "YQ=="}, "titles": "Poems"},
        {"images": {"b64": "Yg=="}, "titles": ""},
    ]
    assert serving_client.predict_request([b"a"])["signature_name"] == "serving_default"
    with pytest.raises(ValueError, match="2 images and 1 titles"):
        serving_client.predict_request([b"a", b"b"], ["Poems"])


def title_statistics(titles: list[str]):
    rows = pd.DataFrame({constants.TITLE_KEY: [t.encode() for t in titles]})
    return tfdv.generate_statistics_from_dataframe(rows)


def test_mostly_empty_titles_are_a_finding():
    half = title_statistics(["A title", ""] * 5)
    most = title_statistics(["A title"] * 4 + [""] * 6)
    none = title_statistics([""] * 10)
    assert checks.empty_titles({"train": half}) == []
    found = checks.empty_titles({"eval": most, "train": none, "test": half})
    assert [(f["split"], f["feature"], f["problem"]) for f in found] == [
        ("eval", "title", "titles missing"),
        ("train", "title", "titles missing"),
    ]
    assert found[1]["detail"].startswith("100% of the titles are empty, expected at most 50%")


# --- The exported model ---------------------------------------------------------------


@pytest.mark.pipeline
def test_the_title_model_has_the_cover_models_signatures_and_its_own(
    exported, exported_with_titles
):
    assert set(exported_with_titles[3].signatures) == set(exported[3].signatures) | {BOTH}
    assert BOTH not in exported[3].signatures


@pytest.mark.pipeline
@pytest.mark.parametrize("signature", [BOTH, "serving_tf_example"])
def test_every_loader_gives_the_same_outputs(exported_with_titles, signature, tmp_path):
    """TF2's loader, a TF1 Session (TF Serving's C++ loader's path) and saved_model_cli."""
    _, _, export_dir, _ = exported_with_titles
    if signature == BOTH:
        feeds = {"images": COVERS, "titles": TITLES}
    else:
        feeds = {"examples": [example(c, t) for c, t in zip(COVERS, TITLES, strict=True)]}
    feeds = {name: np.array(values, dtype=object) for name, values in feeds.items()}
    tf2 = saved_model_loaders.run_tf2(export_dir, signature, feeds)
    saved_model_loaders.assert_same_outputs(
        tf2, saved_model_loaders.run_tf1(export_dir, signature, feeds)
    )
    saved_model_loaders.assert_same_outputs(
        tf2, saved_model_loaders.run_cli(export_dir, signature, feeds, str(tmp_path))
    )


def answers(loaded, titles=None, examples=None) -> np.ndarray:
    if examples is not None:
        return loaded.signatures["serving_tf_example"](examples=tf.constant(examples))[
            "probabilities"
        ].numpy()
    if titles is None:
        output = loaded.signatures["serving_default"](images=tf.constant(COVERS))
    else:
        output = loaded.signatures[BOTH](images=tf.constant(COVERS), titles=tf.constant(titles))
    return output["probabilities"].numpy()


@pytest.mark.pipeline
def test_a_missing_title_is_an_empty_one_and_titles_change_the_answer(exported_with_titles):
    loaded = exported_with_titles[3]
    without = answers(loaded)
    np.testing.assert_allclose(answers(loaded, titles=[""] * len(COVERS)), without, atol=1e-6)
    no_title = [example(cover, None) for cover in COVERS]
    np.testing.assert_allclose(answers(loaded, examples=no_title), without, atol=1e-6)
    with_titles = answers(loaded, titles=TITLES)
    given = [example(c, t) for c, t in zip(COVERS, TITLES, strict=True)]
    np.testing.assert_allclose(answers(loaded, examples=given), with_titles, atol=1e-6)
    assert np.abs(with_titles - without).max() > 1e-3


@pytest.mark.pipeline
def test_no_training_serving_skew_in_the_title_features(exported_with_titles, tmp_path):
    cnn, output, _, loaded = exported_with_titles
    path = tiny_model.write_tfrecords(str(tmp_path / "books.gz"), ROWS)
    data = inputs.input_fn([path], output, batch_size=len(ROWS), shuffle=False, with_titles=True)
    features, _ = next(iter(data))
    # The ids are the vocabulary's tokens of each title, in the title's order.
    vocabulary = [t.decode() for t in output.vocabulary_by_name(constants.TITLE_VOCABULARY)]
    for ids, title in zip(features[constants.TITLE_TOKENS_KEY].numpy(), TITLES, strict=True):
        known = [token for token in words(title) if token in vocabulary]
        assert [vocabulary[i - 1] for i in ids if i] == known[: constants.MAX_TITLE_TOKENS]
    assert any(features[constants.TITLE_TOKENS_KEY].numpy().ravel())
    trained = cnn.predict(features, verbose=0)
    np.testing.assert_allclose(answers(loaded, titles=TITLES), trained, atol=1e-5)


@pytest.mark.pipeline
def test_a_request_needs_a_title_per_image(exported_with_titles):
    loaded = exported_with_titles[3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="as many titles as images"):
        loaded.signatures[BOTH](images=tf.constant(COVERS), titles=tf.constant(TITLES[:2]))


# --- Its consumers: the predict command, TF Serving's clients, the catalogue ----------


def cover_files(tmp_path) -> list[str]:
    paths = []
    for i, cover in enumerate(COVERS[:3]):
        paths.append(str(tmp_path / f"cover{i}.img"))
        with open(paths[-1], "wb") as f:
            f.write(cover)
    return paths


@pytest.mark.pipeline
def test_the_predict_command_takes_a_title_per_cover(
    exported, exported_with_titles, tmp_path, capsys
):
    _, _, export_dir, loaded = exported_with_titles
    paths = cover_files(tmp_path)
    titles = [t.decode() for t in TITLES[:3]]
    results = predict.main([export_dir, *paths, *(f"--title={t}" for t in titles)])
    expected = loaded.signatures[BOTH](images=tf.constant(COVERS[:3]), titles=tf.constant(titles))
    assert [r["category"] for r in results] == [c.decode() for c in expected["category"].numpy()]
    with pytest.raises(SystemExit):
        predict.main([export_dir, *paths, "--title=One title"])
    assert "3 covers and 1 --title: give one each" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main([exported[2], paths[0], "--title=A title"])
    assert "classifies covers alone" in capsys.readouterr().err


@pytest.mark.pipeline
def test_rest_and_grpc_clients_send_the_titles(exported_with_titles):
    _, _, export_dir, loaded = exported_with_titles
    titles = [t.decode() for t in TITLES]
    expected = answers(loaded, titles=titles)
    with model_server(export_dir) as (url, target, _):
        over_rest = serving_client.predict_rest(url, MODEL, COVERS, titles=titles)
        over_grpc = serving_client.predict_grpc(target, MODEL, COVERS, titles=titles)
        without = serving_client.predict_rest(url, MODEL, COVERS)
    for results in (over_rest, over_grpc):
        np.testing.assert_allclose([r["probabilities"] for r in results], expected, atol=1e-5)
    np.testing.assert_allclose([r["probabilities"] for r in without], answers(loaded), atol=1e-5)


@pytest.mark.pipeline
@pytest.mark.parametrize("reads_titles", [True, False])
def test_the_catalogue_gives_titles_to_a_model_that_reads_them(
    exported, exported_with_titles, reads_titles
):
    _, _, export_dir, loaded = exported_with_titles if reads_titles else exported
    handler = CoverModelHandler(export_dir, "1")
    titles = [t.decode() for t in TITLES]
    results = handler.run_inference(list(zip(COVERS, titles, strict=True)), handler.load_model())
    expected = answers(loaded, titles=titles) if reads_titles else answers(loaded)
    top = [r.inference["categories"][0] for r in results]
    names = [n.decode() for n in loaded.class_names.numpy()]
    assert top == [names[i] for i in np.argmax(expected, axis=1)]
    assert [r.example for r in results] == COVERS


# --- The pipeline ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """Generated covers over HTTP: the CSV, and a copy of it whose titles are all empty."""
    root = tmp_path_factory.mktemp("books")
    with http_covers.serving(str(root)) as url:
        csv_path = embedded_data.generate(
            str(root), categories=3, per_category=16, image_url_prefix=url
        )
        untitled = root / "untitled"
        untitled.mkdir()
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(untitled / "books_data.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "Title": ""} for row in rows)
        yield csv_path, str(untitled / "books_data.csv")


@pytest.mark.pipeline
def test_the_pipeline_trains_and_pushes_the_title_model_and_stops_without_titles(books, tmp_path):
    """After a cover-only run, as a user would try it: the same splits and Transform graph
    from the cache, the title model evaluated against the cover model (TFMA then keeps a
    result per model) and reported; then the same CSV with its titles emptied stops at
    the data gate, and the pushed model stays."""
    csv_path, untitled = books
    argv = ["--categories", "3", "--per-class", "16", *TINY_TRAINING, "--output-dir", str(tmp_path)]
    local_runner.main(["--books-csv", csv_path, *argv])
    argv += ["--model-option", "inputs=cover_title"]
    summary = local_runner.main(["--books-csv", csv_path, *argv])
    statuses = {name: c["status"] for name, c in summary["components"].items()}
    assert statuses["Transform"] == "cached", statuses
    assert statuses["Trainer"] == statuses["Evaluator"] == statuses["ReportGen"] == "executed"
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite")
    )
    run = run_artifacts.latest_run(connection, configs.PIPELINE_NAME).artifacts
    matrix = evaluation.confusion_matrix(run.evaluation, 3)
    assert matrix.sum() == summary["test_examples"]
    assert round(np.trace(matrix) / matrix.sum(), 4) == round(summary["test_accuracy"], 4)
    trained = tf.saved_model.load(os.path.join(run.model, "Format-Serving"))
    assert BOTH in trained.signatures
    # Its kept epoch was chosen by the accuracy of both ways it is served.
    model_run = run.model.replace(f"{os.sep}model{os.sep}", f"{os.sep}model_run{os.sep}")
    with open(os.path.join(model_run, "best_epoch.json")) as f:
        assert json.load(f)["monitor"] == "val_both_ways_accuracy"
    pushed = sorted(os.listdir(tmp_path / "serving_model"))
    with pytest.raises(SystemExit):
        local_runner.main(["--books-csv", untitled, *argv])
    with open(tmp_path / "run_summary.json") as f:
        stopped = json.load(f)
    assert stopped["state"] == "stopped", stopped
    missing = [
        f for f in stopped["data_validation"]["findings"] if f["problem"] == "titles missing"
    ]
    assert {f["split"] for f in missing} == {"train", "eval", "test"}, stopped
    assert missing[0]["detail"].startswith("100% of the titles are empty"), missing
    assert sorted(os.listdir(tmp_path / "serving_model")) == pushed
