"""Classifying a catalogue: a books CSV's covers from a real HTTP server on 127.0.0.1,
through Beam's RunInference over a real exported model, into a predictions CSV and a
summary that join back to the input rows."""

import csv
import dataclasses
import os

import pytest
import tensorflow as tf

from bookcover import constants, downloader, spreadsheet
from components.catalogue import classify, inference
from components.catalogue.classify import CatalogueSettings, classify_catalogue
from pipeline import classify_catalogue as command
from tests import cover_server as cs
from tests import images, tiny_model

pytestmark = pytest.mark.pipeline  # the exported model is trained with TFT on Beam

COVERS = 10


def write_books(path: str, rows: list[tuple[str, str, str]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Title", "description", "authors", "image", "categories"])
        for title, image, categories in rows:
            writer.writerow([title, "a book", "['Someone']", image, categories])
    return path


@pytest.fixture
def books(tmp_path, server):
    """A CSV of covers without a category, three rows that fail in three ways, one row
    with a category, one with a title a spreadsheet would run."""
    rows = []
    for i in range(COVERS):
        server.routes[f"/c{i}.jpg"] = cs.send_bytes(images.jpeg(color=tiny_model.COLORS[i % 3]))
        rows.append((f"Uncategorised {i}", f"{server.url}/c{i}.jpg", ""))
    server.routes["/text"] = cs.send_bytes(b"no image here", "text/plain")
    rows += [
        ("No cover", "", ""),
        ("Gone", f"{server.url}/missing.jpg", "[]"),
        ("Not an image", f"{server.url}/text", ""),
        ("Labelled", f"{server.url}/c0.jpg", "['Art']"),
        ("=HYPERLINK(1)", f"{server.url}/c1.jpg", ""),
    ]
    return write_books(str(tmp_path / "books.csv"), rows), server


def read_predictions(output_dir: str) -> list[dict]:
    with open(os.path.join(output_dir, classify.PREDICTIONS_FILE), newline="") as f:
        return list(csv.DictReader(f))


def expected_answers(urls, export_dir):
    """The images the downloader fetches from these URLs, through serving_default directly."""
    with downloader.make_session(2) as session:
        covers = [downloader.download_image(url, session, cs.FAST_FETCH) for url in urls]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    output = serve(images=tf.constant(covers))
    return [
        ([n.decode() for n in names], [float(s) for s in scores])
        for names, scores in zip(
            output["top_categories"].numpy(), output["top_scores"].numpy(), strict=True
        )
    ]


def test_rows_without_a_category_are_classified_as_serving_default_does(books, exported, tmp_path):
    csv_path, _ = books
    export_dir = exported[2]
    settings = CatalogueSettings(batch_size=4, fetch=cs.FAST_FETCH)
    out = str(tmp_path / "predictions")
    summary = classify_catalogue(csv_path, os.path.dirname(export_dir), out, settings)

    predictions = read_predictions(out)
    # One row per row taken, joined back on the row number; the labelled row is left out.
    with open(csv_path, newline="") as f:
        titles = {row: line["Title"] for row, line in enumerate(csv.DictReader(f), start=1)}
    assert sorted(int(p["row"]) for p in predictions) == [r for r in titles if r != 14]
    for p in predictions:
        assert spreadsheet.text_of(p["title"]) == titles[int(p["row"])]
    assert {p["title"] for p in predictions if "HYPERLINK" in p["title"]} == {"'=HYPERLINK(1)"}

    classified = sorted(
        (p for p in predictions if not p["failure_reason"]), key=lambda p: int(p["row"])
    )
    assert len(classified) == COVERS + 1
    expected = expected_answers([p["image_url"] for p in classified], export_dir)
    for p, (names, scores) in zip(classified, expected, strict=True):
        assert [p["category_1"], p["category_2"], p["category_3"]] == names
        found = [float(p[f"score_{k}"]) for k in (1, 2, 3)]
        assert found == pytest.approx(scores, abs=1e-5)
        assert p["model_version"] == "1"

    failures = {p["title"]: p["failure_reason"] for p in predictions if p["failure_reason"]}
    assert failures == {"No cover": "no_image", "Gone": "http_404", "Not an image": "not_an_image"}
    assert summary["failed"] == {"no_image": 1, "http_404": 1, "not_an_image": 1}
    assert summary["rows_read"] == 15 and summary["rows_taken"] == 14
    assert summary["covers_to_fetch"] == 13
    assert summary["classified"] == COVERS + 1
    assert sum(summary["predicted_categories"].values()) == COVERS + 1
    assert set(summary["predicted_categories"]) <= set(tiny_model.CATEGORIES)
    assert summary["model_version"] == "1"
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_an_image_only_the_model_refuses_fails_alone_and_the_gallery_holds_covers(
    books, exported, tmp_path
):
    """Images reach the model as fetched, once their header passes: a truncated JPEG
    passes the header check, the model's decoder refuses it and the rest of its batch is
    classified. The gallery keeps stored covers (100x150 JPEG) whatever was fetched (a
    large image is made one before it is ranked, so the ranking holds little)."""
    from PIL import Image

    _, server = books
    whole = images.jpeg(size=(300, 450), color=tiny_model.COLORS[0])
    server.routes["/truncated.jpg"] = cs.send_bytes(whole[: len(whole) // 2])
    server.routes["/large.jpg"] = cs.send_bytes(whole)
    server.routes["/clear.png"] = cs.send_bytes(images.png(color=(*tiny_model.COLORS[1], 128)))
    noise = Image.effect_noise((900, 1350), 80).convert("RGB")
    huge = images.encode(noise, "JPEG", quality=95)
    assert len(huge) > classify.GALLERY_MAX_IMAGE_BYTES
    server.routes["/huge.jpg"] = cs.send_bytes(huge)
    rows = [(f"Good {i}", f"{server.url}/c{i}.jpg", "") for i in range(3)]
    rows += [
        ("Truncated", f"{server.url}/truncated.jpg", ""),
        ("Large", f"{server.url}/large.jpg", ""),
        ("Transparent", f"{server.url}/clear.png", ""),
        ("Huge", f"{server.url}/huge.jpg", ""),
    ]
    csv_path = write_books(str(tmp_path / "odd.csv"), rows)
    out = str(tmp_path / "odd")
    fetch = dataclasses.replace(cs.FAST_FETCH, max_bytes=constants.MAX_IMAGE_BYTES)
    settings = CatalogueSettings(batch_size=8, fetch=fetch)
    summary = classify_catalogue(csv_path, exported[2], out, settings)

    predictions = {p["title"]: p for p in read_predictions(out)}
    assert predictions["Truncated"]["failure_reason"] == "not_classified"
    assert predictions["Truncated"]["failure_detail"]  # the decoder's own words
    assert summary["classified"] == 6 and summary["failed"] == {"not_classified": 1}
    expected = expected_answers([f"{server.url}/large.jpg"], exported[2])
    assert predictions["Large"]["category_1"] == expected[0][0][0]
    shown = os.listdir(os.path.join(out, classify.GALLERY_DIR))
    # At most six a category: every one of the six classified, the huge one (row 7) too.
    assert sorted(shown) == [f"row{row}.jpg" for row in (1, 2, 3, 5, 6, 7)]
    for name in shown:
        with Image.open(os.path.join(out, classify.GALLERY_DIR, name)) as cover:
            assert (cover.format, cover.size) == ("JPEG", (100, 150))


def test_all_takes_the_labelled_rows_too(books, exported, tmp_path):
    csv_path, _ = books
    settings = CatalogueSettings(all_rows=True, fetch=cs.FAST_FETCH)
    out = str(tmp_path / "all")
    summary = classify_catalogue(csv_path, exported[2], out, settings)
    assert summary["rows_taken"] == 15 and summary["classified"] == COVERS + 2
    assert "Labelled" in {p["title"] for p in read_predictions(out)}


def test_a_catalogue_without_covers_to_fetch_keeps_no_model_loaded_ahead(exported, tmp_path):
    csv_path = write_books(str(tmp_path / "none.csv"), [("No cover", "", ""), ("Nor", "", "")])
    settings = CatalogueSettings(fetch=cs.FAST_FETCH)
    summary = classify_catalogue(csv_path, exported[2], str(tmp_path / "out"), settings)
    assert summary["classified"] == 0 and summary["failed"] == {"no_image": 2}
    # The step loaded it ahead; RunInference's set-up takes it even with no cover to
    # classify, so the process keeps no model once the pipeline has ended.
    assert exported[2] not in inference._AHEAD


def test_the_command_prints_its_summary_and_names_a_missing_model(
    books, exported, tmp_path, capsys
):
    csv_path, _ = books
    out = str(tmp_path / "cli")
    argv = ["--books-csv", csv_path, "--model", exported[2], "--output", out]
    summary = command.main([*argv, "--download-deadline", "5"])
    captured = capsys.readouterr()
    assert "classified: 11; failed: " in captured.out and "http_404 1" in captured.out
    # Live progress as ingestion's: covers done of those to fetch, with the failures.
    assert "ClassifyCatalogue: covers: 100% 13/13" in captured.err
    assert "failed=2" in captured.err
    assert summary["classified"] == COVERS + 1
    assert os.path.exists(os.path.join(out, command.LOG_FILE))
    empty = tmp_path / "no_model"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no saved_model.pb and no pushed version"):
        command.main(["--books-csv", csv_path, "--model", str(empty), "--output", out])
    # A CSV the reader cannot count stops the command with the reader's one line, whether
    # the header says so (before the pipeline) or the file's end (inside it).
    with open(csv_path, encoding="utf-8") as f:
        text = f.read()
    no_image_column = tmp_path / "no_image.csv"
    no_image_column.write_text(text.replace("image", "picture", 1), encoding="utf-8")
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text(text + 'A last book,"an unclosed\ndescription\n', encoding="utf-8")
    for path, message in ((no_image_column, "missing required column"), (unclosed, "never closed")):
        with pytest.raises(SystemExit, match=message):
            command.main(["--books-csv", str(path), "--model", exported[2], "--output", out])


def test_the_pipeline_step_classifies_nothing_when_nothing_was_pushed(tmp_path):
    """ClassifyCatalogue's executor after a Pusher that did not push (the model was not
    blessed): a summary that says so, and no predictions."""
    import json

    from tfx.types import standard_artifacts

    from bookcover import CataloguePredictions
    from components.catalogue import executor

    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    pushed.set_int_custom_property("pushed", 0)
    predictions = CataloguePredictions()
    predictions.uri = str(tmp_path / "predictions")
    os.makedirs(predictions.uri)
    executor.Executor().Do(
        {"pushed_model": [pushed]},
        {"predictions": [predictions]},
        {"books_csv": str(tmp_path / "never_read.csv"), "settings": "{}"},
    )
    assert os.listdir(predictions.uri) == [classify.SUMMARY_FILE]
    with open(os.path.join(predictions.uri, classify.SUMMARY_FILE)) as f:
        assert json.load(f) == {"skipped": executor.NOT_PUSHED}


def test_a_push_reads_as_pushed_when_kubeflow_hands_the_flag_back_as_a_float():
    from tfx.types import standard_artifacts

    from bookcover.artifacts import flag

    pushed = standard_artifacts.PushedModel()
    pushed.set_float_custom_property("pushed", 1.0)  # through KFP's JSON
    assert flag(pushed, "pushed")
    pushed.set_int_custom_property("pushed", 0)
    assert not flag(pushed, "pushed")


def test_the_handler_takes_the_model_loaded_ahead_or_loads_it_itself(exported, tmp_path):
    export_dir = exported[2]
    inference.load_ahead(export_dir)
    ahead = inference._AHEAD[export_dir]
    handler = inference.CoverModelHandler(export_dir, "1")
    model = handler.load_model()
    assert model is ahead.result()
    assert handler.load_model() is not model  # taken once: a later load is the handler's
    # A load ahead that fails leaves the handler's own load, and its own error.
    missing = str(tmp_path / "missing")
    inference.load_ahead(missing)
    with pytest.raises(OSError, match="missing"):
        inference.CoverModelHandler(missing, "1").load_model()
    assert missing not in inference._AHEAD
